//! The mail's chart: attempts per day (bars, left axis) and success rate (line, right axis)
//! over the last [`CHART_DAYS`](super::CHART_DAYS) days, drawn in memory and encoded as PNG.

use std::sync::OnceLock;

use chrono::NaiveDate;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, RGBColor};

use super::DailyStats;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 280;

/// The font of every label, embedded so the chart draws the same on a server without
/// fontconfig or any system font (Go Regular, BSD-3; see `assets/Go-Regular.LICENSE`).
const FONT: &[u8] = include_bytes!("../../assets/Go-Regular.ttf");
/// The family plotters asks for by default: registering under it covers every label.
const FAMILY: &str = "sans-serif";

const BAR: RGBColor = RGBColor(74, 126, 187);
const LINE: RGBColor = RGBColor(214, 96, 39);
const AXIS_TEXT: RGBColor = RGBColor(60, 60, 60);

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the embedded chart font cannot be read")]
    Font,
    #[error("cannot draw the chart: {0}")]
    Draw(String),
    #[error("cannot encode the chart as PNG: {0}")]
    Encode(#[from] png::EncodingError),
}

/// The chart of `days` (oldest first; `None` where a day has no row) as a PNG of
/// [`WIDTH`] × [`HEIGHT`] pixels. A day without a row has no bar and breaks the line.
pub fn render_png(days: &[(NaiveDate, Option<&DailyStats>)]) -> Result<Vec<u8>, ChartError> {
    register_embedded_font()?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(days, &mut rgb).map_err(ChartError::Draw)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(out)
}

fn register_embedded_font() -> Result<(), ChartError> {
    // plotters keeps fonts in a process-wide table; once is enough.
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

fn draw(days: &[(NaiveDate, Option<&DailyStats>)], rgb: &mut [u8]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;

    let max_attempts = days
        .iter()
        .filter_map(|(_, d)| d.map(|d| d.attempts))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    // Bars are centred on whole numbers, so a label at x = i stands under day i's bar.
    let x_range = -0.5..days.len() as f64 - 0.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "attempts per day (bars)  ·  success rate (line, right axis)",
            (FAMILY, 15).into_font().color(&AXIS_TEXT),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(52)
        .right_y_label_area_size(44)
        .build_cartesian_2d(x_range.clone(), 0.0..max_attempts * 1.1)
        .map_err(|e| err(&e))?
        .set_secondary_coord(x_range, 0.0..100.0);

    let day_label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 0.01 || i < 0.0 {
            return String::new();
        }
        days.get(i as usize)
            .map(|(day, _)| day.format("%m-%d").to_string())
            .unwrap_or_default()
    };
    let label_style = (FAMILY, 12).into_font().color(&AXIS_TEXT);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(days.len().div_ceil(5).max(1))
        .x_label_formatter(&day_label)
        .y_labels(5)
        .y_label_formatter(&|v| super::email::thousands(v.round() as i64))
        .label_style(label_style.clone())
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_labels(5)
        .y_label_formatter(&|v| format!("{v:.0} %"))
        .label_style(label_style)
        .draw()
        .map_err(|e| err(&e))?;

    chart
        .draw_series(days.iter().enumerate().filter_map(|(i, (_, d))| {
            let d = (*d)?;
            let x = i as f64;
            Some(Rectangle::new(
                [(x - 0.35, 0.0), (x + 0.35, d.attempts as f64)],
                BAR.filled(),
            ))
        }))
        .map_err(|e| err(&e))?;
    // One line per run of days with rows: a missing day is a gap, not a fall to zero.
    for run in days
        .iter()
        .enumerate()
        .collect::<Vec<_>>()
        .split(|(_, (_, d))| d.is_none())
        .filter(|run| !run.is_empty())
    {
        let points: Vec<(f64, f64)> = run
            .iter()
            .filter_map(|(i, (_, d))| d.map(|d| (*i as f64, d.success_rate() * 100.0)))
            .collect();
        chart
            .draw_secondary_series(LineSeries::new(points.clone(), LINE.stroke_width(2)))
            .map_err(|e| err(&e))?;
        chart
            .draw_secondary_series(points.into_iter().map(|p| Circle::new(p, 2, LINE.filled())))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Days, Utc};

    fn stats(day: NaiveDate, attempts: i64, successful: i64) -> DailyStats {
        DailyStats {
            day,
            attempts,
            successful_attempts: successful,
            unique_users: 1,
            computed_at: Utc::now(),
            submits: 0,
            submit_success_rate: None,
        }
    }

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(png_bytes).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn thirty_days_with_a_gap_draw_a_png_with_bars_and_a_line() {
        let first: NaiveDate = "2026-10-26".parse().unwrap();
        let rows: Vec<DailyStats> = (0..30)
            .filter(|i| *i != 12)
            .map(|i| stats(first + Days::new(i), 1_000 + 37 * i as i64, 700))
            .collect();
        let days: Vec<_> = (0..30)
            .map(|i| {
                let day = first + Days::new(i);
                (day, rows.iter().find(|r| r.day == day))
            })
            .collect();
        let png_bytes = render_png(&days).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        let (info, pixels) = decode(&png_bytes);
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        let count = |c: RGBColor| {
            pixels
                .chunks(3)
                .filter(|p| p[0] == c.0 && p[1] == c.1 && p[2] == c.2)
                .count()
        };
        assert!(count(BAR) > 5_000, "bars drawn: {}", count(BAR));
        assert!(count(LINE) > 300, "line drawn: {}", count(LINE));
        // The y labels are drawn with the embedded font: dark pixels left of the axis,
        // where nothing but text goes.
        let label_column_ink = (0..HEIGHT as usize)
            .flat_map(|y| (0..40).map(move |x| (y * WIDTH as usize + x) * 3))
            .filter(|&i| pixels[i] < 160)
            .count();
        assert!(label_column_ink > 50, "label ink: {label_column_ink}");
    }

    #[test]
    fn days_without_rows_draw_an_empty_chart() {
        let first: NaiveDate = "2026-10-26".parse().unwrap();
        let days: Vec<_> = (0..30).map(|i| (first + Days::new(i), None)).collect();
        let (info, _) = decode(&render_png(&days).unwrap());
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    }
}

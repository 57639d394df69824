//! `lms-etl status`: the last runs of the configured `api.client`, the last days' statistics
//! and the health checks as terminal tables.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::load::{Database, LoadError};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn num(n: i64) -> Cell {
    Cell::new(n).set_alignment(CellAlignment::Right)
}

/// Renders the three tables as text: `client`'s runs (and any from before runs were kept
/// per client), the days (shared by every client of the database) and the checks.
pub async fn render(
    db: &Database,
    client: &str,
    runs: i64,
    days: i64,
) -> Result<String, LoadError> {
    let run_rows = db
        .client()
        .query(
            "SELECT run_id, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' .. '
                        || to_char(window_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                    status, fetched, inserted, duplicates, rejected,
                    coalesce((stage_ms->>'total')::bigint, 0), coalesce(error, ''), conflicts
               FROM lms_etl.runs WHERE client = $2 OR client IS NULL ORDER BY run_id DESC LIMIT $1",
            &[&runs, &client],
        )
        .await
        .map_err(|source| LoadError::Query {
            what: "reading lms_etl.runs".into(),
            source,
        })?;
    let mut t = table(&[
        "run",
        "started (UTC)",
        "window (UTC)",
        "status",
        "fetched",
        "inserted",
        "dupes",
        "conflicts",
        "rejected",
        "ms",
        "error",
    ]);
    for r in &run_rows {
        let error: String = r.get(9);
        t.add_row(vec![
            num(r.get(0)),
            Cell::new(r.get::<_, String>(1)),
            Cell::new(r.get::<_, String>(2)),
            Cell::new(r.get::<_, String>(3)),
            num(r.get(4)),
            num(r.get(5)),
            num(r.get(6)),
            num(r.get(10)),
            num(r.get(7)),
            num(r.get(8)),
            Cell::new(error.chars().take(60).collect::<String>()),
        ]);
    }
    let day_rows = db
        .client()
        .query(
            "SELECT to_char(day, 'YYYY-MM-DD'), attempts, successful_attempts, unique_users,
                    CASE WHEN attempts = 0 THEN '-' ELSE to_char(100.0 * successful_attempts / attempts, 'FM990.0') || '%' END,
                    submits, coalesce(to_char(100.0 * submit_success_rate, 'FM990.0') || '%', '-')
               FROM (SELECT * FROM lms_etl.daily_stats ORDER BY day DESC LIMIT $1) d ORDER BY day",
            &[&days],
        )
        .await
        .map_err(|source| LoadError::Query { what: "reading lms_etl.daily_stats".into(), source })?;
    let mut d = table(&[
        "day",
        "attempts",
        "successful",
        "unique users",
        "success rate",
        "submits",
        "submit success",
    ]);
    for r in &day_rows {
        d.add_row(vec![
            Cell::new(r.get::<_, String>(0)),
            num(r.get(1)),
            num(r.get(2)),
            num(r.get(3)),
            Cell::new(r.get::<_, String>(4)).set_alignment(CellAlignment::Right),
            num(r.get(5)),
            Cell::new(r.get::<_, String>(6)).set_alignment(CellAlignment::Right),
        ]);
    }
    let checks = crate::health::table(&crate::health::checks(db).await?);
    Ok(format!(
        "Last runs of api.client {client:?}\n{t}\n\nDaily statistics\n{d}\n\nHealth checks (lms_etl.health(), worst first)\n{checks}\n"
    ))
}

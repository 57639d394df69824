//! `spreadsheets.batchUpdate` of the emulator: the requests the loader sends (addSheet,
//! insertDimension, appendDimension, updateSheetProperties, addChart, updateChartSpec), all or nothing.

use serde_json::{json, Value};

use super::{resize, same_title, sheet_properties, Chart, Inner, Rejection, Tab};

/// Applies every request of `body` in order to a copy of the spreadsheet and keeps the
/// copy only if all succeed, as Google does; returns the replies.
pub(super) fn apply(inner: &mut Inner, body: &Value) -> Result<Vec<Value>, Rejection> {
    let requests = body["requests"].as_array().cloned().unwrap_or_default();
    if requests.is_empty() {
        return Err(Rejection::invalid("Must specify at least one request."));
    }
    let mut book = Book {
        tabs: inner.tabs.clone(),
        next_tab_id: inner.next_tab_id,
        next_chart_id: inner.next_chart_id,
    };
    let mut replies = Vec::new();
    let mut labels = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let Some((kind, body)) = request.as_object().and_then(|o| o.iter().next()) else {
            return Err(Rejection::invalid(format!(
                "Invalid requests[{i}]: empty request"
            )));
        };
        let (reply, label) = book.apply(kind, body).map_err(|message| {
            Rejection::invalid(format!("Invalid requests[{i}].{kind}: {message}"))
        })?;
        replies.push(reply);
        labels.push(label);
    }
    inner.tabs = book.tabs;
    inner.next_tab_id = book.next_tab_id;
    inner.next_chart_id = book.next_chart_id;
    inner
        .calls
        .push(format!("spreadsheets.batchUpdate {}", labels.join("; ")));
    Ok(replies)
}

/// The spreadsheet while a batch is applied.
struct Book {
    tabs: Vec<Tab>,
    next_tab_id: i64,
    next_chart_id: i64,
}

type Applied = Result<(Value, String), String>;

impl Book {
    fn apply(&mut self, kind: &str, body: &Value) -> Applied {
        match kind {
            "addSheet" => self.add_sheet(body),
            "insertDimension" => self.insert_dimension(body),
            "appendDimension" => self.append_dimension(body),
            "updateSheetProperties" => self.update_sheet_properties(body),
            "addChart" => self.add_chart(body),
            "updateChartSpec" => self.update_chart_spec(body),
            other => Err(format!("the emulator does not support {other}")),
        }
    }

    fn tab_index(&self, sheet_id: &Value) -> Result<usize, String> {
        let id = sheet_id.as_i64().unwrap_or(0);
        self.tabs
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(|| format!("No grid with id: {id}"))
    }

    fn check_title_free(&self, title: &str, except: Option<usize>) -> Result<(), String> {
        let taken = self
            .tabs
            .iter()
            .enumerate()
            .any(|(i, t)| Some(i) != except && same_title(&t.title, title));
        if taken {
            return Err(format!(
                "A sheet with the name \"{title}\" already exists. Please enter another name."
            ));
        }
        Ok(())
    }

    fn add_sheet(&mut self, body: &Value) -> Applied {
        let properties = &body["properties"];
        let Some(title) = properties["title"].as_str() else {
            return Err("the emulator needs properties.title".into());
        };
        self.check_title_free(title, None)?;
        let id = match properties["sheetId"].as_i64() {
            Some(id) if id < 0 => return Err(format!("sheetId must be non-negative: {id}")),
            Some(id) if self.tabs.iter().any(|t| t.id == id) => {
                return Err(format!("A sheet with the id {id} already exists."))
            }
            Some(id) => id,
            None => {
                self.next_tab_id += 1;
                self.next_tab_id - 1
            }
        };
        let mut tab = Tab::new(id, title);
        let grid = &properties["gridProperties"];
        if let Some(rows) = grid["rowCount"].as_u64() {
            tab.row_count = rows as usize;
        }
        if let Some(columns) = grid["columnCount"].as_u64() {
            tab.column_count = columns as usize;
        }
        let reply = json!({"addSheet": {"properties": sheet_properties(&tab, self.tabs.len())}});
        self.tabs.push(tab);
        Ok((reply, format!("addSheet {title}")))
    }

    fn insert_dimension(&mut self, body: &Value) -> Applied {
        let range = &body["range"];
        let index = self.tab_index(&range["sheetId"])?;
        if range["dimension"] != "ROWS" {
            return Err("the emulator inserts ROWS only".into());
        }
        let start = range["startIndex"].as_u64().unwrap_or(0) as usize;
        let Some(end) = range["endIndex"].as_u64().map(|e| e as usize) else {
            return Err("range.endIndex is required".into());
        };
        if end <= start {
            return Err(format!(
                "range.endIndex ({end}) must be greater than range.startIndex ({start})"
            ));
        }
        let inherit = body["inheritFromBefore"].as_bool().unwrap_or(false);
        if inherit && start == 0 {
            return Err("Cannot inherit properties from before the first row.".into());
        }
        let tab = &mut self.tabs[index];
        if start > tab.row_count {
            return Err(format!(
                "range.startIndex ({start}) is beyond the grid's {} rows",
                tab.row_count
            ));
        }
        let count = end - start;
        if start < tab.cells.len() {
            tab.cells
                .splice(start..start, std::iter::repeat_n(Vec::new(), count));
        }
        tab.row_count += count;
        let (sheet_id, title) = (tab.id, tab.title.clone());
        for chart in self.tabs.iter_mut().flat_map(|t| t.charts.iter_mut()) {
            shift_ranges(&mut chart.spec, sheet_id, start, count);
        }
        Ok((json!({}), format!("insertDimension {title} {start}..{end}")))
    }

    fn append_dimension(&mut self, body: &Value) -> Applied {
        let index = self.tab_index(&body["sheetId"])?;
        let length = body["length"].as_u64().unwrap_or(0) as usize;
        if length == 0 {
            return Err("length must be positive".into());
        }
        let tab = &mut self.tabs[index];
        match body["dimension"].as_str() {
            Some("ROWS") => tab.row_count += length,
            Some("COLUMNS") => tab.column_count += length,
            _ => return Err("dimension must be ROWS or COLUMNS".into()),
        }
        let label = format!(
            "appendDimension {} {} +{length}",
            tab.title,
            body["dimension"].as_str().unwrap_or_default()
        );
        Ok((json!({}), label))
    }

    fn update_sheet_properties(&mut self, body: &Value) -> Applied {
        let properties = &body["properties"];
        let index = self.tab_index(&properties["sheetId"])?;
        let Some(fields) = body["fields"].as_str() else {
            return Err("'fields' is required".into());
        };
        let fields: Vec<&str> = fields.split(',').map(str::trim).collect();
        let wants = |f: &str| {
            fields
                .iter()
                .any(|field| *field == "*" || *field == f || f.starts_with(&format!("{field}.")))
        };
        if wants("title") {
            let Some(title) = properties["title"].as_str() else {
                return Err("properties.title is required by the field mask".into());
            };
            self.check_title_free(title, Some(index))?;
            self.tabs[index].title = title.to_owned();
        }
        let tab = &mut self.tabs[index];
        let grid = &properties["gridProperties"];
        let rows = if wants("gridProperties.rowCount") {
            grid["rowCount"].as_u64().unwrap_or(0) as usize
        } else {
            tab.row_count
        };
        let columns = if wants("gridProperties.columnCount") {
            grid["columnCount"].as_u64().unwrap_or(0) as usize
        } else {
            tab.column_count
        };
        if rows == 0 || columns == 0 {
            return Err("a sheet keeps at least one row and one column".into());
        }
        resize(tab, rows, columns);
        Ok((
            json!({}),
            format!("updateSheetProperties {} {}", tab.title, fields.join(",")),
        ))
    }

    fn add_chart(&mut self, body: &Value) -> Applied {
        let chart = &body["chart"];
        let position = &chart["position"];
        if position["newSheet"].as_bool() == Some(true) {
            return Err("the emulator does not place charts on new sheets".into());
        }
        let anchor = &position["overlayPosition"]["anchorCell"]["sheetId"];
        let on = if anchor.is_null() {
            &position["sheetId"]
        } else {
            anchor
        };
        let index = self.tab_index(on)?;
        let spec = chart["spec"].clone();
        self.check_ranges(&spec)?;
        let id = match chart["chartId"].as_i64() {
            Some(id) if self.charts().any(|c| c.id == id) => {
                return Err(format!("An object with id {id} already exists."))
            }
            Some(id) => id,
            None => {
                self.next_chart_id += 1;
                self.next_chart_id - 1
            }
        };
        let chart = Chart {
            id,
            spec,
            position: position.clone(),
        };
        let reply = json!({"addChart": {"chart": super::chart_json(&chart)}});
        let tab = &mut self.tabs[index];
        tab.charts.push(chart);
        Ok((reply, format!("addChart {}", tab.title)))
    }

    fn update_chart_spec(&mut self, body: &Value) -> Applied {
        let id = body["chartId"].as_i64().unwrap_or(-1);
        let spec = body["spec"].clone();
        self.check_ranges(&spec)?;
        let Some(chart) = self
            .tabs
            .iter_mut()
            .flat_map(|t| t.charts.iter_mut())
            .find(|c| c.id == id)
        else {
            return Err(format!("No chart with id: {id}"));
        };
        chart.spec = spec;
        Ok((json!({}), format!("updateChartSpec {id}")))
    }

    fn charts(&self) -> impl Iterator<Item = &Chart> {
        self.tabs.iter().flat_map(|t| t.charts.iter())
    }

    /// Every grid range a chart spec names must be on an existing sheet, within its grid.
    fn check_ranges(&self, spec: &Value) -> Result<(), String> {
        let mut ranges = Vec::new();
        grid_ranges(spec, &mut ranges);
        if ranges.is_empty() {
            return Err("a chart needs at least one source range".into());
        }
        for range in ranges {
            let tab = &self.tabs[self.tab_index(&range["sheetId"])?];
            let end_row = range["endRowIndex"].as_u64().unwrap_or(0) as usize;
            let end_col = range["endColumnIndex"].as_u64().unwrap_or(0) as usize;
            if end_row > tab.row_count || end_col > tab.column_count {
                return Err(format!(
                    "Range exceeds grid limits. Max rows: {}, max columns: {}",
                    tab.row_count, tab.column_count
                ));
            }
        }
        Ok(())
    }
}

/// Every GridRange (an object with a `sheetId` and row or column indexes) inside `value`.
fn grid_ranges<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(o) if o.contains_key("sheetId") && is_grid_range(o) => out.push(value),
        Value::Object(o) => o.values().for_each(|v| grid_ranges(v, out)),
        Value::Array(a) => a.iter().for_each(|v| grid_ranges(v, out)),
        _ => {}
    }
}

fn is_grid_range(o: &serde_json::Map<String, Value>) -> bool {
    [
        "startRowIndex",
        "endRowIndex",
        "startColumnIndex",
        "endColumnIndex",
    ]
    .iter()
    .any(|k| o.contains_key(*k))
}

/// Rows inserted at `at` move ranges below them down and stretch ranges they fall inside,
/// as Google adjusts every reference to the sheet.
fn shift_ranges(value: &mut Value, sheet_id: i64, at: usize, count: usize) {
    match value {
        Value::Object(o)
            if o.get("sheetId").and_then(Value::as_i64) == Some(sheet_id) && is_grid_range(o) =>
        {
            let start = o.get("startRowIndex").and_then(Value::as_u64).unwrap_or(0) as usize;
            let end = o
                .get("endRowIndex")
                .and_then(Value::as_u64)
                .map(|e| e as usize);
            if at <= start && o.contains_key("startRowIndex") {
                o.insert("startRowIndex".into(), json!(start + count));
                if let Some(end) = end {
                    o.insert("endRowIndex".into(), json!(end + count));
                }
            } else if let Some(end) = end.filter(|&end| at < end) {
                o.insert("endRowIndex".into(), json!(end + count));
            }
        }
        Value::Object(o) => o
            .values_mut()
            .for_each(|v| shift_ranges(v, sheet_id, at, count)),
        Value::Array(a) => a
            .iter_mut()
            .for_each(|v| shift_ranges(v, sheet_id, at, count)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sheet_refuses_a_title_differing_only_in_case_and_applies_nothing() {
        let mut inner = Inner {
            tabs: vec![Tab::new(0, "daily_stats")],
            ..Inner::default()
        };
        let body = json!({"requests": [
            {"addSheet": {"properties": {"title": "other"}}},
            {"addSheet": {"properties": {"title": "Daily_Stats"}}}
        ]});
        let err = apply(&mut inner, &body).unwrap_err();
        assert_eq!(
            err.message,
            "Invalid requests[1].addSheet: A sheet with the name \"Daily_Stats\" already exists. Please enter another name."
        );
        assert_eq!(
            inner.tabs.len(),
            1,
            "all or nothing: `other` was not added either"
        );
        assert!(inner.calls.is_empty());
    }

    #[test]
    fn rows_cannot_be_inserted_past_the_grid_or_inherit_before_row_1() {
        let mut inner = Inner {
            tabs: vec![Tab::new(3, "t")],
            ..Inner::default()
        };
        inner.tabs[0].row_count = 2;
        let insert = |start: u64, inherit: bool| {
            json!({"requests": [{"insertDimension": {"inheritFromBefore": inherit,
                "range": {"sheetId": 3, "dimension": "ROWS", "startIndex": start, "endIndex": start + 1}}}]})
        };
        assert!(apply(&mut inner, &insert(3, true)).is_err());
        assert!(apply(&mut inner, &insert(0, true)).is_err());
        apply(&mut inner, &insert(0, false)).unwrap();
        assert_eq!(inner.tabs[0].row_count, 3);
    }

    #[test]
    fn inserted_rows_move_ranges_below_and_stretch_ranges_around_them() {
        let mut spec = json!({"a": {"sheetId": 7, "startRowIndex": 2, "endRowIndex": 5},
                              "b": [{"sheetId": 7, "startRowIndex": 0, "endRowIndex": 5}],
                              "c": {"sheetId": 8, "startRowIndex": 0, "endRowIndex": 5}});
        shift_ranges(&mut spec, 7, 2, 3);
        assert_eq!(
            spec["a"],
            json!({"sheetId": 7, "startRowIndex": 5, "endRowIndex": 8})
        );
        assert_eq!(
            spec["b"][0],
            json!({"sheetId": 7, "startRowIndex": 0, "endRowIndex": 8})
        );
        assert_eq!(spec["c"]["endRowIndex"], 5, "another sheet's range stays");
        shift_ranges(&mut spec, 7, 8, 1);
        assert_eq!(
            spec["b"][0]["endRowIndex"], 8,
            "rows added right below a range do not join it"
        );
    }
}

//! `status` and `stats` output: rows as JSON objects (the server's `row_to_json`, column
//! order kept), printed as JSON or as an aligned table.

use serde_json::{Map, Value};

pub type Row = Map<String, Value>;

/// A column of a table: its header and how a row shows in it.
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Row) -> String,
}

/// A table in psql's aligned style, with a "(N rows)" footer.
pub fn table(columns: &[Column], rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| (c.cell)(r)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}", w = *w))
            .collect();
        format!(" {}", padded.join(" | ")).trim_end().to_owned()
    };
    let mut out = String::new();
    out.push_str(&line(columns.iter().map(|c| c.header).collect()));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for r in &cells {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out.push_str(&match rows.len() {
        1 => "(1 row)\n".to_owned(),
        n => format!("({n} rows)\n"),
    });
    out
}

/// One value as text: NULL is empty, booleans t/f as in psql, arrays {a,b}, timestamps
/// without their fraction of a second.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => (if *b { "t" } else { "f" }).to_owned(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => {
                let s = format!("{f:.3}");
                s.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
            _ => n.to_string(),
        },
        Value::String(s) => timestamp(s).unwrap_or_else(|| s.clone()),
        Value::Array(a) => format!("{{{}}}", a.iter().map(text).collect::<Vec<_>>().join(",")),
        Value::Object(_) => v.to_string(),
    }
}

/// `2026-12-03T09:01:02.123456+00:00` → `2026-12-03 09:01:02+00:00`; None for other text.
fn timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let looks = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[..4].iter().all(u8::is_ascii_digit);
    if !looks {
        return None;
    }
    let (head, tail) = s.split_at(19);
    let tail = match tail.strip_prefix('.') {
        Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => tail,
    };
    Some(format!("{} {}{tail}", &head[..10], &head[11..]))
}

/// A field of a row as text (missing and NULL are empty).
pub fn field(r: &Row, name: &str) -> String {
    r.get(name).map(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values() {
        assert_eq!(text(&json!(null)), "");
        assert_eq!(text(&json!(true)), "t");
        assert_eq!(text(&json!(42)), "42");
        assert_eq!(text(&json!(1.25)), "1.25");
        assert_eq!(text(&json!(2.0)), "2");
        assert_eq!(text(&json!([1, 2])), "{1,2}");
        assert_eq!(
            text(&json!("2026-12-03T09:01:02.123456+00:00")),
            "2026-12-03 09:01:02+00:00"
        );
        assert_eq!(
            text(&json!("2026-12-03T09:01:02+01:00")),
            "2026-12-03 09:01:02+01:00"
        );
        assert_eq!(text(&json!("00:00:02.5")), "00:00:02.5");
        assert_eq!(text(&json!("daily-report-job")), "daily-report-job");
    }

    #[test]
    fn aligned() {
        let rows: Vec<Row> = [json!({"a": 1, "b": "xyz"}), json!({"a": 22, "b": null})]
            .into_iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect();
        let cols = [
            Column {
                header: "a",
                cell: |r| field(r, "a"),
            },
            Column {
                header: "bee",
                cell: |r| field(r, "b"),
            },
        ];
        assert_eq!(
            table(&cols, &rows),
            " a  | bee\n----+-----\n 1  | xyz\n 22 |\n(2 rows)\n"
        );
    }
}

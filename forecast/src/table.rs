//! Reads a time series from a CSV file with a header: the first column is the time, one named
//! column the value — so `edgewatch forecast plot` can chart the daily weather file, the hourly
//! normals or a metric exported from monitoring without a converter.
//!
//! Times: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` (UTC) or `YYYY-MM-DD` (midnight UTC). Empty cells are
//! missing values and are skipped; anything else that is not a number is an error naming its line.

use time::{
    Date, OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339,
    macros::format_description,
};

use crate::series::Point;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TableError {
    #[error("the file is empty: expected a header line such as `date,temperature`")]
    NoHeader,
    #[error("no column `{column}` in the header (columns: {available})")]
    NoColumn { column: String, available: String },
    #[error("line {line}: {problem}")]
    Bad { line: usize, problem: String },
}

/// Parses a time in one of the accepted forms.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    for format in [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    ] {
        if let Ok(t) = PrimitiveDateTime::parse(text, format) {
            return Some(t.assume_utc());
        }
    }
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// The `(time, value)` points of `column`.
pub fn read(text: &str, column: &str) -> Result<Vec<Point>, TableError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(TableError::NoHeader)?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let index =
        names.iter().skip(1).position(|n| *n == column).map(|i| i + 1).ok_or_else(|| {
            TableError::NoColumn { column: column.into(), available: names[1..].join(", ") }
        })?;
    let mut points = Vec::new();
    for (i, line) in lines {
        let bad = |problem: String| TableError::Bad { line: i + 1, problem };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let ts = parse_time(fields[0]).ok_or_else(|| {
            bad(format!(
                "`{}` is not a time (RFC 3339, YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD)",
                fields[0]
            ))
        })?;
        let Some(cell) = fields.get(index) else {
            return Err(bad(format!("expected {} fields, found {}", names.len(), fields.len())));
        };
        if cell.is_empty() {
            continue;
        }
        let value =
            cell.parse::<f64>().map_err(|_| bad(format!("{column} `{cell}` is not a number")))?;
        points.push((ts, value));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_column_and_names_bad_lines() {
        let text = "date,a,b\n2010-01-01T01:00:00,1,2\n2010-01-01,3,\n2010-01-02T00:00:00Z,5,6\n";
        let b = read(text, "b").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0.unix_timestamp(), 1_262_307_600);
        assert_eq!(read(text, "a").unwrap()[1], (parse_time("2010-01-01").unwrap(), 3.0));
        assert!(matches!(read(text, "c"), Err(TableError::NoColumn { .. })));
        assert!(matches!(read(text, "date"), Err(TableError::NoColumn { .. })));
        assert_eq!(read("", "a"), Err(TableError::NoHeader));
        assert!(matches!(read("t,a\nnever,1\n", "a"), Err(TableError::Bad { line: 2, .. })));
        assert!(matches!(read("t,a\n2010-01-01,x\n", "a"), Err(TableError::Bad { line: 2, .. })));
        assert!(matches!(read("t,a,b\n2010-01-01,1\n", "b"), Err(TableError::Bad { line: 2, .. })));
    }
}

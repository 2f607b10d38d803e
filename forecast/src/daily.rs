//! Daily weather observations in the `seattle-weather.csv` format:
//! `date,precipitation,temp_max,temp_min,wind,weather` with ISO dates, one row per day in order.

use std::path::Path;

use time::{Date, macros::format_description};

/// One day of observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub date: Date,
    pub precipitation_mm: f64,
    pub temp_max_c: f64,
    pub temp_min_c: f64,
    pub wind_ms: f64,
    pub weather: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("line {line}: {problem}")]
    Bad { line: usize, problem: String },
    #[error("the file has a header but no data rows")]
    Empty,
}

const HEADER: &str = "date,precipitation,temp_max,temp_min,wind,weather";

/// Reads a CSV file of daily observations.
pub fn load(path: &Path) -> Result<Vec<Day>, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|cause| DataError::Io { path: path.display().to_string(), cause })?;
    parse(&text)
}

/// Parses the CSV text; every row must be one day after the previous one.
pub fn parse(text: &str) -> Result<Vec<Day>, DataError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == HEADER => {}
        _ => {
            return Err(DataError::Bad {
                line: 1,
                problem: format!("expected the header `{HEADER}`"),
            });
        }
    }
    let format = format_description!("[year]-[month]-[day]");
    let mut days: Vec<Day> = Vec::new();
    for (index, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = index + 1;
        let bad = |problem: String| DataError::Bad { line: line_no, problem };
        let fields: Vec<&str> = line.trim().split(',').collect();
        let [date, precipitation, temp_max, temp_min, wind, weather] = fields[..] else {
            return Err(bad(format!("expected 6 fields, found {}", fields.len())));
        };
        let number = |name: &str, text: &str| -> Result<f64, DataError> {
            match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(bad(format!("{name} `{text}` is not a finite number"))),
            }
        };
        let date = Date::parse(date.trim(), &format)
            .map_err(|_| bad(format!("date `{date}` is not YYYY-MM-DD")))?;
        if let Some(previous) = days.last()
            && previous.date.next_day() != Some(date)
        {
            return Err(bad(format!(
                "{date} does not follow {} (one row per day, in order)",
                previous.date
            )));
        }
        days.push(Day {
            date,
            precipitation_mm: number("precipitation", precipitation)?,
            temp_max_c: number("temp_max", temp_max)?,
            temp_min_c: number("temp_min", temp_min)?,
            wind_ms: number("wind", wind)?,
            weather: weather.trim().to_owned(),
        });
    }
    if days.is_empty() {
        return Err(DataError::Empty);
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_names_the_bad_line() {
        let ok = format!(
            "{HEADER}\n2012-01-01,0.0,12.8,5.0,4.7,drizzle\n2012-01-02,10.9,10.6,2.8,4.5,rain\n"
        );
        let days = parse(&ok).unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[1].temp_max_c, 10.6);
        assert_eq!(days[1].weather, "rain");

        let cases = [
            ("date,x\n", 1),
            (&*format!("{HEADER}\n2012-01-01,0.0,NaN,5.0,4.7,sun\n"), 2),
            (&*format!("{HEADER}\n2012-01-01,0.0,1,5.0,sun\n"), 2),
            (&*format!("{HEADER}\n2012-01-01,0,1,1,1,sun\n2012-01-03,0,1,1,1,sun\n"), 3),
            (&*format!("{HEADER}\n2012-13-01,0,1,1,1,sun\n"), 2),
        ];
        for (text, line) in cases {
            match parse(text) {
                Err(DataError::Bad { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(parse(&format!("{HEADER}\n")), Err(DataError::Empty)));
    }
}

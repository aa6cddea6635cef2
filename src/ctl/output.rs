//! How `hotplane ctl` prints: aligned columns for people, one JSON document per answer (one
//! JSON object per line for `watch`) for scripts, and the small formatters both share.
//!
//! Plain aligned columns rather than a table crate: the tables are a handful of short columns
//! with no borders or wrapping, and a crate would add nothing a reader of the output needs.

use std::io::Write;

use serde_json::Value;

use super::error::{CtlError, Exit};
use crate::pb;

/// Writes `text` to stdout. A closed pipe (`hotplane ctl audit | head`) is not an error worth a
/// message: the reader has what it wanted, so it ends the command quietly.
pub fn print(text: &str) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(CtlError::local(Exit::Ok, "stdout closed"))
        }
        Err(e) => Err(CtlError::local(
            Exit::Failed,
            format!("writing the output: {e}"),
        )),
    }
}

/// One JSON document, pretty for an answer or compact for a watch line.
pub fn print_json(value: &Value, compact: bool) -> Result<(), CtlError> {
    let text = if compact {
        serde_json::to_string(value)
    } else {
        serde_json::to_string_pretty(value)
    }
    .map_err(|e| CtlError::local(Exit::Failed, format!("encoding JSON: {e}")))?;
    print(&text)
}

/// A table of aligned columns: a header row in capitals, then one row per item; the last
/// column is not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_uppercase()).collect()],
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The table as text, columns two spaces apart.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines, keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect()
}

/// A timestamp as `2026-12-07 09:00:01Z` (seconds; UTC), or `-` when absent.
pub fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

/// A duration as `1.2s`, `350ms`, or `-` when absent.
pub fn duration(d: Option<&prost_types::Duration>) -> String {
    d.and_then(|d| std::time::Duration::try_from(*d).ok())
        .map(|d| {
            let ms = d.as_millis();
            if ms >= 1000 {
                format!("{:.1}s", d.as_secs_f64())
            } else if ms >= 1 {
                format!("{ms}ms")
            } else {
                format!("{}µs", d.as_micros())
            }
        })
        .unwrap_or_else(|| "-".into())
}

/// An enum's proto name without its prefix, lower case: `TARGET_PATTERNS` → `patterns`.
pub fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

/// Text, or `-` when empty.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.into()
    }
}

/// The first `n` characters of `text`, with `…` when cut.
pub fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.into()
    } else {
        let mut cut: String = text.chars().take(n.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A `google.protobuf.Struct` as compact JSON text (`{}` when absent).
pub fn metadata(m: Option<&prost_types::Struct>) -> String {
    m.map(|m| super::json::to_json(m, "google.protobuf.Struct").to_string())
        .unwrap_or_else(|| "{}".into())
}

/// The drain state in a few words.
pub fn drain_text(d: Option<&pb::DrainStatus>) -> String {
    match d {
        Some(d) if d.draining => format!(
            "draining since {}: {:?} ({} request(s), {} stream(s) running)",
            time(d.since.as_ref()),
            d.reason,
            d.in_flight_requests,
            d.open_streams
        ),
        Some(d) => format!(
            "serving ({} request(s), {} stream(s) running)",
            d.in_flight_requests, d.open_streams
        ),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell_counting_characters() {
        let mut t = Table::new(&["id", "pattern", "status"]);
        t.row(vec!["1".into(), "perché no".into(), "approved".into()]);
        t.row(vec!["12".into(), "x".into(), "pending".into()]);
        assert_eq!(
            t.render(),
            "ID  PATTERN    STATUS\n1   perché no  approved\n12  x          pending\n"
        );
    }

    #[test]
    fn formatters() {
        let ts = prost_types::Timestamp {
            seconds: 1_796_634_001,
            nanos: 5,
        };
        assert_eq!(time(Some(&ts)), "2026-12-07 09:00:01Z");
        assert_eq!(time(None), "-");
        let d = prost_types::Duration {
            seconds: 1,
            nanos: 250_000_000,
        };
        assert_eq!(duration(Some(&d)), "1.2s");
        assert_eq!(short("TARGET_PATTERNS", "TARGET_"), "patterns");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}

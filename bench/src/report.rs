//! What a run prints: one row per figure with the baseline measured in the same run, the ratio
//! and the target; a table for people, or one JSON document for tooling.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::CpuUse;

/// A target from issue 6, checked against a figure's value or its ratio to the baseline.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "check", content = "limit", rename_all = "snake_case")]
pub enum Target {
    /// value ≤ limit (in the figure's unit).
    AtMost(f64),
    /// ratio to the baseline ≤ limit.
    RatioAtMost(f64),
    /// ratio to the baseline ≥ limit.
    RatioAtLeast(f64),
}

impl Target {
    fn met(self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::AtMost(limit) => Some(value <= limit),
            Target::RatioAtMost(limit) => ratio.map(|r| r <= limit),
            Target::RatioAtLeast(limit) => ratio.map(|r| r >= limit),
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::AtMost(limit) => format!("<= {} {unit}", num(limit)),
            Target::RatioAtMost(limit) => format!("ratio <= {limit}"),
            Target::RatioAtLeast(limit) => format!("ratio >= {limit}"),
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured, e.g. `postgres 100k: full reload (median)`.
    pub case: String,
    /// The measured value.
    pub value: f64,
    /// Unit of value and baseline: `ns`, `ms`, `req/s`, `B/pattern`, `loads`, ...
    pub unit: &'static str,
    /// What the baseline is.
    pub baseline_name: String,
    /// The baseline, measured in the same run (None where there is no meaningful one).
    pub baseline: Option<f64>,
    /// value / baseline.
    pub ratio: Option<f64>,
    /// The target, if it sets one for this figure.
    pub target: Option<Target>,
    /// Whether the target is met (None without a target).
    pub met: Option<bool>,
    /// Supporting numbers (percentiles, counts), free text.
    pub detail: String,
}

impl Figure {
    /// A figure with a baseline; the ratio is computed.
    pub fn new(
        case: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline_name: impl Into<String>,
        baseline: f64,
    ) -> Figure {
        let ratio = (baseline > 0.0 && baseline.is_finite()).then(|| value / baseline);
        Figure {
            case: case.into(),
            value,
            unit,
            baseline_name: baseline_name.into(),
            baseline: Some(baseline),
            ratio,
            target: None,
            met: None,
            detail: String::new(),
        }
    }

    /// Attaches the target and checks it.
    pub fn target(mut self, target: Target) -> Figure {
        self.met = target.met(self.value, self.ratio);
        self.target = Some(target);
        self
    }

    /// Attaches supporting numbers.
    pub fn detail(mut self, detail: impl Into<String>) -> Figure {
        self.detail = detail.into();
        self
    }
}

/// The figures of one scenario and the conditions it ran in.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name as given on the command line.
    pub name: &'static str,
    /// One line saying what is measured and how.
    pub method: String,
    /// The figures, in order.
    pub figures: Vec<Figure>,
    /// Observations worth a reader's attention (limits hit, sizes skipped).
    pub notes: Vec<String>,
    /// Wall time of the scenario, seconds (setup included).
    pub seconds: f64,
    /// 1-minute load average before and after.
    pub loadavg: (f64, f64),
    /// CPU use while it ran.
    pub cpu: CpuUse,
}

/// The machine a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads `/proc`.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|v| v.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_mib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// hotplane version.
    pub version: &'static str,
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// The command line.
    pub command: String,
    /// Whether `--quick` sizes were used.
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// The scenarios, in the order run.
    pub scenarios: Vec<ScenarioReport>,
}

impl Report {
    /// Figures whose target is not met, as `scenario: case`.
    pub fn missed(&self) -> Vec<String> {
        self.scenarios
            .iter()
            .flat_map(|s| {
                s.figures
                    .iter()
                    .filter(|f| f.met == Some(false))
                    .map(move |f| format!("{}: {}", s.name, f.case))
            })
            .collect()
    }

    /// The figures as Markdown tables, one per scenario (for BENCHMARKS.md).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for s in &self.scenarios {
            let _ = writeln!(out, "### `{}`\n", s.name);
            let _ = writeln!(
                out,
                "{} ({:.1} s; load average {:.2} → {:.2}; CPU busy {:.2} cores, of which the \
                 bench {:.2})\n",
                s.method,
                s.seconds,
                s.loadavg.0,
                s.loadavg.1,
                s.cpu.machine_cores,
                s.cpu.bench_cores
            );
            out.push_str("| figure | value | baseline (same run) | ratio | target | |\n");
            out.push_str("|---|---:|---|---:|---|---|\n");
            for f in &s.figures {
                let baseline = f.baseline.map_or_else(
                    || "-".to_owned(),
                    |b| format!("{} {} ({})", num(b), f.unit, f.baseline_name),
                );
                let detail = if f.detail.is_empty() {
                    String::new()
                } else {
                    format!("<br>{}", f.detail)
                };
                let _ = writeln!(
                    out,
                    "| {}{detail} | {} {} | {baseline} | {} | {} | {} |",
                    f.case,
                    num(f.value),
                    f.unit,
                    f.ratio.map_or_else(|| "-".to_owned(), num),
                    f.target.map_or_else(String::new, |t| t.text(f.unit)),
                    match f.met {
                        Some(true) => "met",
                        Some(false) => "**missed**",
                        None => "",
                    }
                );
            }
            for note in &s.notes {
                let _ = writeln!(out, "\n- {note}");
            }
            out.push('\n');
        }
        out
    }

    /// The readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "hotplane-bench {} | {} | {} cores, {}, {} MiB | {}{}",
            self.version,
            self.date,
            m.cores,
            m.cpu_model,
            m.memory_mib,
            self.command,
            if self.quick { " (quick sizes)" } else { "" }
        );
        for s in &self.scenarios {
            out.push('\n');
            let _ = writeln!(out, "== {} ({:.1} s) — {}", s.name, s.seconds, s.method);
            let _ = writeln!(
                out,
                "   load avg {:.2} → {:.2}; CPU busy {:.2} cores (bench {:.2}, others incl. PostgreSQL {:.2})",
                s.loadavg.0, s.loadavg.1, s.cpu.machine_cores, s.cpu.bench_cores, s.cpu.other_cores
            );
            out.push_str(&figure_table(&s.figures));
            for note in &s.notes {
                let _ = writeln!(out, "   note: {note}");
            }
        }
        let missed = self.missed();
        out.push('\n');
        if missed.is_empty() {
            out.push_str("every figure with a target meets it\n");
        } else {
            let _ = writeln!(out, "targets not met ({}):", missed.len());
            for m in missed {
                let _ = writeln!(out, "  - {m}");
            }
        }
        out
    }
}

fn figure_table(figures: &[Figure]) -> String {
    let header = ["case", "value", "baseline", "ratio", "target", ""];
    let rows: Vec<[String; 6]> = figures
        .iter()
        .map(|f| {
            let baseline = match f.baseline {
                Some(b) => format!("{} {} ({})", num(b), f.unit, f.baseline_name),
                None => "-".to_owned(),
            };
            [
                f.case.clone(),
                format!("{} {}", num(f.value), f.unit),
                baseline,
                f.ratio.map_or_else(|| "-".to_owned(), num),
                f.target.map_or_else(String::new, |t| t.text(f.unit)),
                match f.met {
                    Some(true) => "met".to_owned(),
                    Some(false) => "MISSED".to_owned(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        out.push_str("   ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            // Numbers right-aligned, text left-aligned.
            if i == 1 || i == 3 {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str("  ");
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, &header.map(str::to_owned));
    for (row, f) in rows.iter().zip(figures) {
        line(&mut out, row);
        if !f.detail.is_empty() {
            let _ = writeln!(out, "     {}", f.detail);
        }
    }
    out
}

/// A number with as many digits as it deserves: 3 significant digits below 1,000, thousands
/// separated above.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 {
        let int = v.round() as i64;
        let digits = int.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if int < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".to_owned()
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(212.4), "212");
        assert_eq!(num(21.24), "21.2");
        assert_eq!(num(2.124), "2.12");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.01234), "0.012");
    }

    #[test]
    fn targets_check_value_or_ratio() {
        let f = Figure::new("x", 250.0, "ns", "floor", 100.0).target(Target::AtMost(300.0));
        assert_eq!((f.met, f.ratio), (Some(true), Some(2.5)));
        let f = Figure::new("x", 250.0, "ns", "floor", 100.0).target(Target::RatioAtMost(1.3));
        assert_eq!(f.met, Some(false));
        let f = Figure::new("x", 1.0, "loads", "none", 0.0).target(Target::RatioAtLeast(0.9));
        assert_eq!((f.ratio, f.met), (None, None));
    }
}

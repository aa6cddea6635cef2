//! Measuring helpers: percentiles, process memory from `/proc/self/status`, and how busy the
//! machine was (from `/proc/stat`), so every figure can say what else was running.

use std::time::Duration;

/// Distribution of a set of samples (same unit as the samples).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// 99.9th percentile (nearest rank).
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

/// Summarizes `samples` (sorted in place). An empty set gives all zeros.
pub fn summarize(samples: &mut [f64]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    samples.sort_by(f64::total_cmp);
    Summary {
        n: samples.len(),
        min: samples[0],
        p50: rank(samples, 0.50),
        p99: rank(samples, 0.99),
        p999: rank(samples, 0.999),
        max: samples[samples.len() - 1],
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn rank(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Milliseconds of a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Resident memory of this process, from `/proc/self/status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Rss {
    /// `VmRSS`: resident now, bytes.
    pub now: u64,
    /// `VmHWM`: the highest resident size since start (or since [`reset_peak`]), bytes.
    pub peak: u64,
}

/// Reads `VmRSS` and `VmHWM`; zeros where `/proc` is unavailable.
pub fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Rss {
        now: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0: writing 5 to `clear_refs`), so that the
/// next [`rss`] reports the peak of what ran in between. False if the kernel refused.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU time counters at one instant: the whole machine and this process (with its waited-for
/// children, i.e. the memory probes), in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    machine_busy: u64,
    machine_total: u64,
    this_process: u64,
}

/// How busy the CPUs were between two marks, in cores (2.0 = both cores of a 2-core machine).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuUse {
    /// Cores busy on the whole machine.
    pub machine_cores: f64,
    /// Cores used by this bench process (client, in-process servers, engine).
    pub bench_cores: f64,
    /// Cores used by everything else: PostgreSQL working for the bench, and other people's
    /// builds and tests.
    pub other_cores: f64,
}

impl CpuMark {
    /// Reads the counters now (zeros where `/proc` is unavailable).
    pub fn now() -> CpuMark {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the parenthesised command name: utime is the 14th field overall, then
        // stime, cutime, cstime.
        let after = own.rsplit_once(')').map_or("", |(_, rest)| rest);
        let this_process = after
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        CpuMark {
            machine_busy: total.saturating_sub(idle),
            machine_total: total,
            this_process,
        }
    }

    /// CPU use since `self`, in cores.
    pub fn since(&self, cores: usize) -> CpuUse {
        let now = CpuMark::now();
        let total = now.machine_total.saturating_sub(self.machine_total);
        if total == 0 {
            return CpuUse::default();
        }
        // machine_total counts ticks of all CPUs; ticks per core = total / cores.
        let per_core = total as f64 / cores.max(1) as f64;
        let busy = now.machine_busy.saturating_sub(self.machine_busy) as f64 / per_core;
        let bench = now.this_process.saturating_sub(self.this_process) as f64 / per_core;
        CpuUse {
            machine_cores: busy,
            bench_cores: bench,
            other_cores: (busy - bench).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let s = summarize(&mut v);
        assert_eq!((s.p50, s.p99, s.p999, s.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(summarize(&mut []).n, 0);
        assert_eq!(summarize(&mut [7.0]).p99, 7.0);
    }

    #[test]
    fn proc_readers_do_not_fail() {
        let r = rss();
        assert!(r.now > 0 && r.peak >= r.now);
        let mark = CpuMark::now();
        let u = mark.since(2);
        assert!(u.other_cores >= 0.0);
    }
}

//! The benchmark suite must not rot: `hotplane-bench --quick` runs every scenario at small sizes
//! (here in the debug build, against the test PostgreSQL and SQLite) and reports every figure
//! with its same-run baseline. Nothing about speed is asserted — figures are for people to read
//! (BENCHMARKS.md), never thresholds a busy CI machine could trip over.

use std::process::Command;

use hotplane_testkit::{db::admin_url, redis_url};

#[test]
fn quick_bench_runs_every_scenario_and_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_hotplane-bench"))
        .args(["--quick", "--json", "--database-url", &admin_url()])
        .args(["--redis-url", &redis_url()])
        .output()
        .expect("the bench binary starts");
    assert!(
        out.status.success(),
        "hotplane-bench --quick failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON document");
    let scenarios = report["scenarios"].as_array().expect("a scenarios array");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "lookup",
            "reload",
            "reload-under-load",
            "burst",
            "match",
            "propagate",
            "structures"
        ]
    );
    for scenario in scenarios {
        let figures = scenario["figures"].as_array().expect("a figures array");
        assert!(!figures.is_empty(), "{} has no figures", scenario["name"]);
        for f in figures {
            let value = f["value"].as_f64();
            let baseline = f["baseline"].as_f64();
            assert!(
                value.is_some_and(|v| v.is_finite() && v >= 0.0)
                    && baseline.is_some_and(|b| b.is_finite() && b >= 0.0),
                "{}: every figure has a value and a same-run baseline: {f}",
                scenario["name"]
            );
        }
    }
}

//! Prometheus metrics on the admin listener (`--admin-listen`): scraped over real HTTP from a
//! real server after real gRPC calls, asserting the values that moved; the listener's absence by
//! default; and the Grafana dashboard charting only metrics the server exposes.

use std::{collections::BTreeMap, net::SocketAddr};

use hotplane::pb;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

use crate::{
    bus::{bus_config, channel, redis_url},
    db::TestDb,
    helpers::{Backend, TestApp, eventually, learn_req, match_req, reload_req},
};

/// One scrape: every sample as (name, labels) → value.
struct Scrape {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).sum()
    }

    /// The one sample named `name` with exactly these labels, if present.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = f64> + 'a {
        self.samples
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
    }

    /// Every metric family named by a `# TYPE` line.
    fn families(&self) -> Vec<&str> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect()
    }
}

/// GETs `path` from the admin listener over a plain HTTP/1.1 connection; returns the status
/// line, the headers and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut conn = TcpStream::connect(addr).await.expect("connects to admin");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("sends");
    let mut raw = String::new();
    conn.read_to_string(&mut raw)
        .await
        .expect("reads the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

/// Scrapes `/metrics` and parses the Prometheus text format (sample lines only).
async fn scrape(app: &TestApp) -> Scrape {
    let addr = app.admin_addr.expect("admin listener configured");
    let (status, headers, body) = get(addr, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            (name.to_owned(), labels, value)
        })
        .collect();
    Scrape {
        text: body,
        samples,
    }
}

/// `a="x",b="y"` → {a: x, b: y} (the values here have no quotes or commas in them).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("label pair");
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

/// Waits until a scrape satisfies `check`, returning it.
async fn scrape_until(app: &TestApp, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually(what, || async {
        let s = scrape(app).await;
        check(&s).then_some(s)
    })
    .await
}

/// A server on PostgreSQL with a Redis bus (so the fleet exists) and the admin listener on
/// port 0.
async fn spawn_with_metrics() -> TestApp {
    let db = TestDb::postgres().await;
    let mut config = bus_config(&db, &redis_url(), &channel("hotplane:metrics"));
    config.admin_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let app = TestApp::start(config, db).await;
    app.wait_ready().await;
    app
}

const MATCH: [(&str, &str); 3] = [
    ("grpc_type", "unary"),
    ("grpc_service", "hotplane.v1.Patterns"),
    ("grpc_method", "MatchPattern"),
];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

#[tokio::test]
async fn grpc_calls_reloads_and_drain_move_the_metrics() {
    let mut app = spawn_with_metrics().await;
    let patterns = [("target", "patterns")];

    // Before any call: every method's started series exists at 0; the startup load is counted.
    let before = scrape_until(&app, "the startup load counted", |s| {
        s.sum(
            "hotplane_reloads_total",
            &with(&patterns, &[("outcome", "success")]),
        ) >= 1.0
    })
    .await;
    assert_eq!(before.get("grpc_server_started_total", &MATCH), Some(0.0));
    let success = with(&patterns, &[("outcome", "success")]);
    let loads_before = before.sum("hotplane_reloads_total", &success);

    // Real calls: learn, an explicit full reload, a match that succeeds and one refused.
    let learned = app
        .patterns
        .learn_pattern(learn_req("stato del sistema metriche", "status", 0.95))
        .await
        .expect("learn")
        .into_inner();
    assert!(learned.served);
    let reloaded = app
        .reload
        .reload(reload_req(true, None))
        .await
        .expect("reload")
        .into_inner();
    // The engine picks the mode (a full request may load as a delta): count under its name.
    let mode = reloaded
        .mode()
        .as_str_name()
        .trim_start_matches("LOAD_MODE_")
        .to_ascii_lowercase();
    app.patterns
        .match_pattern(match_req("stato del sistema metriche"))
        .await
        .expect("match");
    let bad = app
        .patterns
        .match_pattern(pb::MatchPatternRequest {
            query: "x".into(),
            min_confidence: Some(1.5),
            ..Default::default()
        })
        .await
        .expect_err("bad min_confidence");
    assert_eq!(bad.code(), Code::InvalidArgument);
    app.health
        .check(HealthCheckRequest::default())
        .await
        .expect("health");
    // A bus swap to a malformed URL fails: a reload failure of target bus.
    let swap = app
        .reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Bus.into(),
            redis_url: "not a url".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad redis_url");
    assert_eq!(swap.code(), Code::InvalidArgument);

    let generation = app.engine.current().number;
    // Every load the engine reports (its own count, in status) is counted from the events too.
    let s = scrape_until(&app, "the reloads counted", |s| {
        let counted = s.sum("hotplane_reloads_total", &success);
        counted >= loads_before + 2.0
            && Some(counted) == s.get("hotplane_loads_total", &patterns)
            && s.sum("hotplane_reloads_total", &[("target", "bus")]) >= 1.0
    })
    .await;
    let this_mode = with(&success, &[("mode", mode.as_str())]);
    assert!(s.sum("hotplane_reloads_total", &this_mode) >= 1.0, "{mode}");

    // gRPC: started and handled by code, OK from the trailers, InvalidArgument from a
    // trailers-only answer; the histogram saw both.
    assert_eq!(s.get("grpc_server_started_total", &MATCH), Some(2.0));
    let ok = with(&MATCH, &[("grpc_code", "OK")]);
    let invalid = with(&MATCH, &[("grpc_code", "InvalidArgument")]);
    assert_eq!(s.get("grpc_server_handled_total", &ok), Some(1.0));
    assert_eq!(s.get("grpc_server_handled_total", &invalid), Some(1.0));
    assert_eq!(
        s.get("grpc_server_handling_seconds_count", &MATCH),
        Some(2.0)
    );
    let le_inf = with(&MATCH, &[("le", "+Inf")]);
    assert_eq!(
        s.get("grpc_server_handling_seconds_bucket", &le_inf),
        Some(2.0)
    );
    assert_eq!(
        s.sum(
            "grpc_server_handled_total",
            &[("grpc_method", "LearnPattern"), ("grpc_code", "OK")]
        ),
        1.0
    );
    assert_eq!(
        s.get(
            "grpc_server_handled_total",
            &[
                ("grpc_type", "unary"),
                ("grpc_service", "grpc.health.v1.Health"),
                ("grpc_method", "Check"),
                ("grpc_code", "OK"),
            ]
        ),
        Some(1.0)
    );
    // Reloads: the explicit full one, the learn's, and the failed bus swap.
    assert_eq!(
        s.sum(
            "hotplane_reloads_total",
            &[("target", "bus"), ("mode", "none"), ("outcome", "failure")]
        ),
        1.0
    );
    assert!(s.sum("hotplane_reload_duration_seconds_count", &patterns) >= 3.0);
    assert!(s.sum("hotplane_content_hash_changes_total", &patterns) >= 1.0);
    assert!(
        s.sum(
            "hotplane_status_events_total",
            &[("kind", "pattern_learned")]
        ) >= 1.0
    );
    // Status read at scrape time.
    assert_eq!(
        s.get("hotplane_generation", &patterns),
        Some(generation as f64)
    );
    assert_eq!(s.get("hotplane_items", &patterns), Some(1.0));
    assert_eq!(s.get("hotplane_draining", &[]), Some(0.0));
    assert_eq!(s.get("hotplane_quarantined_patterns", &[]), Some(0.0));
    assert_eq!(s.get("hotplane_bus_enabled", &[]), Some(1.0));
    assert_eq!(s.get("hotplane_audit_dropped_total", &[]), Some(0.0));

    // A server stream is started when it opens and handled only when it ends.
    let watch = [
        ("grpc_service", "hotplane.v1.HotReload"),
        ("grpc_method", "WatchStatus"),
    ];
    let mut stream = app
        .reload
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect("watch")
        .into_inner();
    stream.message().await.expect("snapshot").expect("an event");
    let open = scrape(&app).await;
    assert_eq!(open.sum("grpc_server_started_total", &watch), 1.0);
    assert_eq!(open.sum("grpc_server_handled_total", &watch), 0.0);
    assert_eq!(open.get("hotplane_open_streams", &[]), Some(1.0));
    drop(stream);
    // (The two move one after the other as the body is dropped: wait for both.)
    let closed = scrape_until(&app, "the closed stream counted as handled", |s| {
        s.sum("grpc_server_handled_total", &watch) == 1.0
            && s.get("hotplane_open_streams", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(
        closed.sum(
            "grpc_server_handled_total",
            &with(&watch, &[("grpc_code", "Canceled")])
        ),
        1.0,
        "a stream the client dropped is Canceled"
    );

    // Draining shows, and the refusals it makes are counted with their code.
    app.drain
        .start_drain(pb::StartDrainRequest {
            reason: "metrics test".into(),
            grace: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            wait: false,
        })
        .await
        .expect("start drain");
    let refused = app
        .patterns
        .match_pattern(match_req("stato del sistema metriche"))
        .await
        .expect_err("refused while draining");
    assert_eq!(refused.code(), Code::Unavailable);
    let drained = scrape_until(&app, "the drain shown", |s| {
        s.get("hotplane_draining", &[]) == Some(1.0)
    })
    .await;
    let unavailable = with(&MATCH, &[("grpc_code", "Unavailable")]);
    assert_eq!(
        drained.get("grpc_server_handled_total", &unavailable),
        Some(1.0)
    );
    assert_eq!(drained.get("hotplane_in_flight_requests", &[]), Some(0.0));
    assert!(drained.sum("hotplane_status_events_total", &[("kind", "drain_changed")]) >= 1.0);

    // The fleet of one, once its heartbeat is read back.
    let fleet = scrape_until(&app, "the fleet of one", |s| {
        s.get("hotplane_fleet_members", &[]) == Some(1.0)
    })
    .await;
    assert!(fleet.get("hotplane_fleet_converged_members", &[]).is_some());
    app.stop().await.expect("stops");
}

#[tokio::test]
async fn no_admin_listener_unless_configured() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(app.admin_addr, None);
    let defaults = hotplane::config::Config::for_database("sqlite://unused.db");
    assert_eq!(defaults.admin_listen, None);
    app.stop().await.expect("stops");
}

#[tokio::test]
async fn other_admin_paths_are_not_found() {
    let db = TestDb::sqlite().await;
    let mut config = hotplane::config::Config::for_database(db.url());
    config.admin_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let app = TestApp::start(config, db).await;
    let (status, _, _) = get(app.admin_addr.expect("admin"), "/nothing").await;
    assert!(status.contains(" 404 "), "{status}");
    app.stop().await.expect("stops");
}

/// Every metric name in `expr` (PromQL): identifiers of our families, with histogram suffixes.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("hotplane_") || w.starts_with("grpc_server_"))
        .map(str::to_owned)
        .collect()
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_charts_only_metrics_the_server_exposes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/hotplane.json");
    let text = std::fs::read_to_string(path).expect("deploy/grafana/hotplane.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    for key in ["title", "uid", "panels", "schemaVersion"] {
        assert!(dashboard.get(key).is_some(), "dashboard has no {key}");
    }
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 10, "only {} queries", all.len());

    // A family without samples is not listed, so first make each one move: a change of the
    // served content, and a rollback.
    let mut app = spawn_with_metrics().await;
    let first = app.engine.current().number;
    app.patterns
        .learn_pattern(learn_req("cruscotto delle metriche", "status", 0.95))
        .await
        .expect("learn");
    app.reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            to_generation: first,
            reason: "metrics test".into(),
            ..Default::default()
        })
        .await
        .expect("rollback");
    let s = scrape_until(&app, "the fleet, the change and the rollback listed", |s| {
        s.get("hotplane_fleet_members", &[]).is_some()
            && s.sum("hotplane_rollbacks_total", &[]) == 1.0
            && s.sum("hotplane_content_hash_changes_total", &[]) == 2.0
    })
    .await;
    let families = s.families();
    let exposed = |name: &str| {
        families.iter().any(|f| {
            name == *f
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(f))
        })
    };
    let mut named = 0;
    for expr in &all {
        for name in metric_names(expr) {
            named += 1;
            assert!(exposed(&name), "{name} (in `{expr}`) is not exposed");
        }
    }
    assert!(named >= all.len(), "every query names a metric");
    // And the headline families a stock gRPC dashboard needs are all charted.
    for family in [
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
    ] {
        assert!(
            all.iter().any(|e| e.contains(family)),
            "the dashboard does not chart {family}"
        );
    }
    app.stop().await.expect("stops");
}

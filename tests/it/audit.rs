//! The audit trail end to end: changes from gRPC, the bus, a store swap and a SIGTERM leave rows
//! in `reload_audit` (read back through ListAudit, or with SQL once the process is gone);
//! ListAudit pages and filters; a failing audit write is counted, never hidden.

use std::{sync::Arc, time::Duration};

use hotplane::pb;
use tonic::Code;

use crate::{
    both_backends,
    bus::{bus_config, channel, publish, redis_url},
    db::TestDb,
    helpers::{Backend, TestApp, eventually, learn_req, reload_req, served, sql},
};

/// The caller recorded for this test's own gRPC calls (no credentials configured: the auth
/// layer's `loopback` and the peer address).
const ME: &str = "loopback:127.0.0.1";

fn list(action: &str, caller: &str) -> pb::ListAuditRequest {
    pb::ListAuditRequest {
        action: action.into(),
        caller: caller.into(),
        ..Default::default()
    }
}

async fn list_audit(app: &TestApp, req: pb::ListAuditRequest) -> pb::ListAuditResponse {
    app.reload
        .clone()
        .list_audit(req)
        .await
        .expect("ListAudit")
        .into_inner()
}

/// Waits until ListAudit(`req`) returns at least `n` rows (they are written asynchronously).
async fn wait_rows(app: &TestApp, req: pb::ListAuditRequest, n: usize) -> Vec<pb::AuditEntry> {
    let what = format!("{n} audit rows for {req:?}");
    eventually(&what, || {
        let req = req.clone();
        async move {
            let rows = list_audit(app, req).await.entries;
            (rows.len() >= n).then_some(rows)
        }
    })
    .await
}

fn bad_field(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn grpc_changes_are_recorded_with_caller_source_and_generations(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let instance = bus_status_instance(&app).await;

    let learned = app
        .patterns
        .learn_pattern(learn_req("quali sono i workflow attivi", "workflow", 0.95))
        .await
        .expect("learn")
        .into_inner();
    let id = learned.pattern.expect("pattern").id;
    let after_learn = learned.generation;
    app.patterns
        .disable_pattern(pb::DisablePatternRequest {
            id,
            reason: "wrong answers".into(),
            ..Default::default()
        })
        .await
        .expect("disable");
    app.reload
        .reload(reload_req(true, None))
        .await
        .expect("reload");
    let rolled = app
        .reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            reason: "disable was a mistake".into(),
            ..Default::default()
        })
        .await
        .expect("rollback")
        .into_inner();
    assert!(
        served(&mut app, "quali sono i workflow attivi")
            .await
            .is_some()
    );
    let mut drain = pb::drain_client::DrainClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    );
    drain
        .start_drain(pb::StartDrainRequest {
            reason: "maintenance".into(),
            ..Default::default()
        })
        .await
        .expect("drain");
    drain
        .stop_drain(pb::StopDrainRequest {})
        .await
        .expect("stop drain");

    // Newest first: stop, start, rollback, reload (a no-op), disable, learn; then startup.
    let rows = wait_rows(&app, list("", ME), 6).await;
    let summary: Vec<_> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.source.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("drain_stop", "grpc", "ok"),
            ("drain_start", "grpc", "ok"),
            ("rollback", "grpc", "ok"),
            ("reload", "grpc", "noop"),
            ("pattern_disable", "write", "ok"),
            ("pattern_learn", "write", "ok"),
        ]
    );
    let learn = &rows[5];
    assert_eq!(learn.target, format!("pattern:{id}"));
    assert_eq!(learn.reason, "learn");
    assert_eq!(learn.generation_after, after_learn);
    assert_eq!(learn.generation_before + 1, after_learn);
    assert_eq!(learn.instance_id, instance);
    assert_eq!(rows[4].reason, "wrong answers");
    assert_eq!(rows[4].generation_before, after_learn);
    let rollback = &rows[2];
    assert_eq!(
        (rollback.generation_before, rollback.generation_after),
        (
            rolled.generation_before,
            rolled.current.expect("current").generation
        )
    );
    assert_eq!(rollback.reason, "disable was a mistake");
    assert_eq!(rows[1].target, "drain");
    assert_eq!(rows[1].reason, "maintenance");
    assert!(rows.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    // The startup load is recorded with its source as the caller.
    let startup = wait_rows(&app, list("reload", "startup"), 1).await;
    assert_eq!(
        (startup[0].source.as_str(), startup[0].generation_after),
        ("startup", 1)
    );

    let status = eventually("the written rows to be counted", || async {
        let a = bus_status_full(&app).await.audit.expect("audit status");
        (a.written >= 7).then_some(a)
    })
    .await;
    assert_eq!((status.dropped, status.write_failures), (0, 0));
    assert_eq!(status.retention_days, 90);
}

async fn pages_and_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for n in 0..5 {
        let mut req = reload_req(false, None);
        req.reason = format!("r{n}");
        app.reload.clone().reload(req).await.expect("reload");
    }
    let all = wait_rows(&app, list("reload", ME), 5).await;
    assert_eq!(all.len(), 5, "only this caller's reloads");
    let reasons: Vec<_> = all.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, vec!["r4", "r3", "r2", "r1", "r0"]);

    // Pages of 2: 2 + 2 + 1, no row twice, none missing, the last page without a token.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list_audit(
            &app,
            pb::ListAuditRequest {
                page_size: 2,
                page_token: token.clone(),
                ..list("reload", ME)
            },
        )
        .await;
        pages += 1;
        seen.extend(page.entries.iter().map(|r| r.reason.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        (pages, seen.clone()),
        (3, reasons.iter().map(|r| r.to_string()).collect())
    );

    // Time range [r1's time, r3's time): exactly the rows whose recorded time is in it.
    let (since, until) = (all[3].at.expect("at"), all[1].at.expect("at"));
    let key = |t: &prost_types::Timestamp| (t.seconds, t.nanos);
    let expected: Vec<_> = all
        .iter()
        .filter(|r| {
            let at = key(r.at.as_ref().expect("at"));
            key(&since) <= at && at < key(&until)
        })
        .map(|r| r.reason.clone())
        .collect();
    assert!(expected.contains(&"r1".to_owned()), "{all:?}");
    let ranged = list_audit(
        &app,
        pb::ListAuditRequest {
            since: Some(since),
            until: Some(until),
            ..list("reload", ME)
        },
    )
    .await
    .entries;
    let ranged: Vec<_> = ranged.iter().map(|r| r.reason.clone()).collect();
    assert_eq!(ranged, expected);

    // Filters narrow: another action or caller finds none of them.
    assert!(
        list_audit(&app, list("rollback", ME))
            .await
            .entries
            .is_empty()
    );
    assert!(
        list_audit(&app, list("reload", "peer:10.9.9.9"))
            .await
            .entries
            .is_empty()
    );

    // Bad filters name their field.
    let ts = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    for (req, field) in [
        (
            pb::ListAuditRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListAuditRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListAuditRequest {
                page_token: "x".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListAuditRequest {
                action: "explode".into(),
                ..Default::default()
            },
            "action",
        ),
        (
            pb::ListAuditRequest {
                caller: "c".repeat(201),
                ..Default::default()
            },
            "caller",
        ),
        (
            pb::ListAuditRequest {
                since: ts(100),
                until: ts(100),
                ..Default::default()
            },
            "until",
        ),
        (
            pb::ListAuditRequest {
                since: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -1,
                }),
                ..Default::default()
            },
            "since",
        ),
    ] {
        let err = app
            .reload
            .clone()
            .list_audit(req)
            .await
            .expect_err("invalid");
        assert_eq!(bad_field(&err), field);
    }
}

/// Rows older than the retention are deleted (at start, then hourly); newer ones stay.
async fn rows_past_the_retention_are_deleted(backend: Backend) {
    let db = match backend {
        Backend::Postgres => TestDb::postgres().await,
        Backend::Sqlite => TestDb::sqlite().await,
    };
    db.store().await.close().await; // migrated
    let (old, new) = match backend {
        Backend::Postgres => ("now() - interval '10 days'", "now() - interval '1 day'"),
        Backend::Sqlite => (
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 days')",
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 days')",
        ),
    };
    let insert = |at: &str, reason: &str| {
        format!(
            "INSERT INTO reload_audit (at, instance, caller, action, target, source, reason, \
               generation_before, generation_after, result, error, duration_ms) \
             VALUES ({at}, 'old-instance', 'someone', 'reload', 'patterns', 'grpc', '{reason}', \
               1, 2, 'ok', '', 1.5)"
        )
    };
    sql(
        &db,
        &[&insert(old, "ten days ago"), &insert(new, "yesterday")],
    )
    .await;
    let mut config = hotplane::config::Config::for_database(db.url());
    config.audit_retention_days = 7;
    let app = TestApp::start(config, db).await;
    app.wait_ready().await;
    let kept = eventually("the expired row to be deleted", || async {
        let rows = list_audit(&app, list("", "someone")).await.entries;
        (rows.len() == 1).then_some(rows)
    })
    .await;
    assert_eq!(kept[0].reason, "yesterday");
    assert_eq!(
        (
            kept[0].generation_before,
            kept[0].generation_after,
            kept[0].duration
        ),
        (
            1,
            2,
            Some(prost_types::Duration {
                seconds: 0,
                nanos: 1_500_000
            })
        )
    );
}

both_backends!(
    grpc_changes_are_recorded_with_caller_source_and_generations,
    pages_and_filters,
    rows_past_the_retention_are_deleted
);

async fn bus_status_full(app: &TestApp) -> pb::GetStatusResponse {
    crate::bus::status(app).await
}

async fn bus_status_instance(app: &TestApp) -> String {
    bus_status_full(app).await.instance_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_message_is_recorded_with_its_origin() {
    let db = Arc::new(TestDb::postgres().await);
    let (redis, ch) = (redis_url(), channel("audit"));
    let mut app = crate::bus::start(bus_config(&db, &redis, &ch), &db).await;
    sql(
        &db,
        &[
            "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, confidence, \
           status) VALUES ('scritto da un altro', 'scritto da un altro', 'other', 0.95, \
           'approved')",
        ],
    )
    .await;
    let id = db
        .client()
        .await
        .int("SELECT max(id)::bigint FROM auto_learned_patterns")
        .await;
    let msg = format!(
        r#"{{"action":"reload","pattern_id":{id},"origin":"web-7-audit","event_id":"e1"}}"#
    );
    publish(&redis, &ch, msg).await;
    crate::bus::wait_served(&mut app, "scritto da un altro").await;

    let rows = wait_rows(&app, list("reload", "bus:web-7-audit"), 1).await;
    let row = &rows[0];
    assert_eq!((row.source.as_str(), row.result.as_str()), ("bus", "ok"));
    assert_eq!(row.reason, format!("bus: reload {id} from web-7-audit"));
    assert_eq!(row.generation_after, row.generation_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_swap_is_recorded_in_the_new_store() {
    let blue = TestApp::spawn(Backend::Postgres).await;
    let green = TestDb::postgres().await;
    blue.reload
        .clone()
        .reload(pb::ReloadRequest {
            target: pb::Target::Store.into(),
            database_url: green.url().into(),
            reason: "move database".into(),
            ..Default::default()
        })
        .await
        .expect("swap");
    // ListAudit reads the current (green) store: the writer follows the swap.
    let rows = wait_rows(&blue, list("store_swap", ME), 1).await;
    assert_eq!(
        (
            rows[0].target.as_str(),
            rows[0].reason.as_str(),
            rows[0].result.as_str()
        ),
        ("store", "move database", "ok")
    );
    let in_green = green
        .client()
        .await
        .int("SELECT count(*)::bigint FROM reload_audit WHERE action = 'store_swap'")
        .await;
    assert_eq!(in_green, 1);
}

/// A store swap that cannot even connect is recorded as failed, with the reason it gave; one
/// refused for its URL changed nothing and is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_swap_that_cannot_connect_is_recorded_as_failed() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let swap = |url: &str, reason: &str| {
        let mut client = app.reload.clone();
        let req = pb::ReloadRequest {
            target: pb::Target::Store.into(),
            database_url: url.into(),
            reason: reason.into(),
            ..Default::default()
        };
        async move { client.reload(req).await }
    };
    let refused = swap("mysql://nowhere/db", "not a url we speak")
        .await
        .expect_err("unsupported URL");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let failed = swap("postgres://postgres@127.0.0.1:1/none", "nothing listens")
        .await
        .expect_err("port 1 refuses");
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition);
    let rows = wait_rows(&app, list("store_swap", ME), 1).await;
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.reason.as_str(), r.result.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(got, vec![("nothing listens", "failed", "store")]);
    assert!(
        rows[0].error.contains("connecting to the new store failed"),
        "{}",
        rows[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_audit_writes_are_counted_and_the_change_still_serves() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    sql(&app.db, &["DROP TABLE reload_audit"]).await;
    app.patterns
        .learn_pattern(learn_req("senza tabella di audit", "audit", 0.95))
        .await
        .expect("learn succeeds without the audit table");
    assert!(served(&mut app, "senza tabella di audit").await.is_some());
    // The database answers (the table is missing): a refusal, not an outage, so the batch is
    // tried 3 times, then given up and counted.
    let audit = eventually("the refused audit rows to be counted as lost", || async {
        let a = bus_status_full(&app).await.audit.expect("audit status");
        (a.rows_lost >= 1).then_some(a)
    })
    .await;
    assert!(audit.write_failures >= 3, "{audit:?}");
    assert!(audit.last_error.contains("reload_audit"), "{audit:?}");
}

/// A PostgreSQL outage loses no audit rows: the writer keeps what it could not write, rows
/// recorded meanwhile wait in the queue, and all are written once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_recorded_during_an_outage_are_written_when_the_database_returns() {
    let db = TestDb::postgres().await;
    let mut proxy = crate::proxy::Proxy::postgres(db.url()).await;
    let app = TestApp::start(hotplane::config::Config::for_database(&proxy.url), db).await;
    app.wait_ready().await;
    proxy.cut().await;
    crate::drain::drain_and_resume(&app, &["outage one", "outage two"]).await;
    eventually("the audit writer to meet the outage", || async {
        let a = bus_status_full(&app).await.audit.expect("audit status");
        (a.write_failures >= 1).then_some(())
    })
    .await;
    proxy.restore().await;
    let rows = eventually("the outage's drains in the trail", || async {
        let rows = app
            .reload
            .clone()
            .list_audit(list("drain_start", ME))
            .await
            .ok()?
            .into_inner()
            .entries;
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    let mut reasons: Vec<_> = rows.iter().map(|r| r.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["outage one", "outage two"]);
    let audit = bus_status_full(&app).await.audit.expect("audit status");
    assert_eq!(audit.rows_lost, 0, "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drain_is_recorded_before_the_process_exits() {
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = crate::binary::start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--database-url", db.url()],
    )
    .await;
    let channel = crate::binary::connect_serving(&addr).await;
    drop(channel);
    crate::helpers::send_signal(child.id().expect("pid"), rustix::process::Signal::TERM);
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
    // The process is gone: its final rows were written before it closed the store.
    let client = db.client().await;
    let rows = client
        .int(
            "SELECT count(*)::bigint FROM reload_audit \
              WHERE action = 'drain_start' AND source = 'signal' AND caller = 'signal' \
                AND reason = 'shutdown' AND result = 'ok'",
        )
        .await;
    assert_eq!(rows, 1);
    let startup = client
        .int("SELECT count(*)::bigint FROM reload_audit WHERE source = 'startup'")
        .await;
    assert_eq!(startup, 1);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_caller_is_recorded_by_name() {
    fn bearer<T>(msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        let value = format!("Bearer {}", crate::auth::ADMIN_TOKEN);
        req.metadata_mut()
            .insert("authorization", value.parse().expect("ascii"));
        req
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = crate::auth::tokens_file(dir.path(), serde_json::json!({}));
    let app =
        TestApp::spawn_with(Backend::Sqlite, |c| c.auth.auth_tokens_file = Some(tokens)).await;
    app.reload
        .clone()
        .reload(bearer(reload_req(true, None)))
        .await
        .expect("reload with the admin token");
    let rows = eventually("the deployer's reload to be listed", || async {
        let rows = app
            .reload
            .clone()
            .list_audit(bearer(list("reload", "deployer")))
            .await
            .expect("ListAudit with the admin token")
            .into_inner()
            .entries;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!((rows[0].source.as_str(), rows.len()), ("grpc", 1));
    // ListAudit is an admin RPC: no token, no trail.
    let err = app
        .reload
        .clone()
        .list_audit(list("", ""))
        .await
        .expect_err("no credentials");
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// A broadcast rollback followed by a replica is recorded there with the origin as caller, and
/// a bus swap (done and failed) by the caller who asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_rollback_and_bus_swaps_are_recorded() {
    let db = Arc::new(TestDb::postgres().await);
    let (redis, ch) = (redis_url(), channel("audit-rollback"));
    // Only signed messages (or an operator's explicit opt-in) may pin a replica.
    let signed = || {
        let mut c = bus_config(&db, &redis, &ch);
        c.bus_secret = Some(hotplane::bus::Secret::new("audit test secret"));
        c
    };
    let mut a = crate::bus::start(signed(), &db).await;
    let mut b = crate::bus::start(signed(), &db).await;
    let (a_id, b_id) = (bus_status_instance(&a).await, bus_status_instance(&b).await);
    for text in ["prima risposta", "seconda risposta"] {
        a.patterns
            .learn_pattern(learn_req(text, "t", 0.95))
            .await
            .expect("learn");
        crate::bus::wait_served(&mut b, text).await;
    }
    a.reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            reason: "bad batch".into(),
            broadcast: true,
            ..Default::default()
        })
        .await
        .expect("broadcast rollback");
    // Both replicas write to the one database; B's row names A as the caller.
    let followed = wait_rows(&b, list("rollback", &format!("bus:{a_id}")), 1).await;
    let row = &followed[0];
    assert_eq!(
        (
            row.instance_id.as_str(),
            row.source.as_str(),
            row.result.as_str()
        ),
        (b_id.as_str(), "bus", "ok")
    );
    assert_eq!(row.generation_after, row.generation_before + 1);
    assert!(served(&mut b, "seconda risposta").await.is_none());

    // A bus swap (to the same Redis), then one that cannot connect.
    a.reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Bus.into(),
            reason: "same redis, new connection".into(),
            ..Default::default()
        })
        .await
        .expect("bus swap");
    a.reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Bus.into(),
            redis_url: "redis://127.0.0.1:1".into(),
            reason: "nowhere".into(),
            ..Default::default()
        })
        .await
        .expect_err("nothing listens on port 1");
    let swaps = wait_rows(&a, list("bus_swap", ME), 2).await;
    let got: Vec<_> = swaps
        .iter()
        .map(|r| (r.reason.as_str(), r.result.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("nowhere", "failed", "bus"),
            ("same redis, new connection", "ok", "bus")
        ]
    );
    assert!(!swaps[0].error.is_empty());
}

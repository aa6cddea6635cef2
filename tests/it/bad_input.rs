//! The limits table in docs/limits.md, row by row, against a real server on PostgreSQL with the Redis
//! bus: every bad input gets its status code and names its field, and afterwards the server
//! still serves what it served, and nothing in the store, the served generation or its content
//! changed.

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc};

use hotplane::pb::{
    self, drain_client::DrainClient, hot_reload_client::HotReloadClient,
    patterns_client::PatternsClient,
};
use prost_types::{Struct, Value, value::Kind};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

use crate::{
    bus::{bus_config, channel, publish, redis_url, status},
    db::TestDb,
    helpers::{eventually, learn_req, match_req, served},
};

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// One row of the table: what is sent, and what the caller must get back.
struct Row {
    input: &'static str,
    code: Code,
    /// The BadRequest field for INVALID_ARGUMENT; empty for other codes.
    field: &'static str,
    call: Call,
}

fn row<T: Send + 'static>(
    input: &'static str,
    code: Code,
    field: &'static str,
    call: impl Future<Output = Result<T, Status>> + Send + 'static,
) -> Row {
    Row {
        input,
        code,
        field,
        call: Box::pin(async move { call.await.map(|_| ()) }),
    }
}

fn invalid<T: Send + 'static>(
    input: &'static str,
    field: &'static str,
    call: impl Future<Output = Result<T, Status>> + Send + 'static,
) -> Row {
    row(input, Code::InvalidArgument, field, call)
}

fn text(n: usize) -> String {
    "a".repeat(n)
}

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

fn dur(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos })
}

/// A metadata Struct whose JSON is about `bytes` long.
fn metadata_of(bytes: usize) -> Option<Struct> {
    Some(Struct {
        fields: [(
            "blob".to_owned(),
            Value {
                kind: Some(Kind::StringValue(text(bytes))),
            },
        )]
        .into(),
    })
}

/// Every gRPC row of the limits table in docs/limits.md.
fn grpc_rows(
    p: &PatternsClient<Channel>,
    r: &HotReloadClient<Channel>,
    d: &DrainClient<Channel>,
) -> Vec<Row> {
    let (p, r, d) = (|| p.clone(), || r.clone(), || d.clone());
    let learn = |f: fn(&mut pb::LearnPatternRequest)| {
        let mut req = learn_req("una domanda valida", "valid", 0.95);
        f(&mut req);
        let mut c = p();
        async move { c.learn_pattern(req).await }
    };
    let reload = |f: fn(&mut pb::ReloadRequest)| {
        let mut req = pb::ReloadRequest {
            target: pb::Target::Patterns.into(),
            ..Default::default()
        };
        f(&mut req);
        let mut c = r();
        async move { c.reload(req).await }
    };
    let list_patterns = |req: pb::ListPatternsRequest| {
        let mut c = p();
        async move { c.list_patterns(req).await }
    };
    let list_audit = |req: pb::ListAuditRequest| {
        let mut c = r();
        async move { c.list_audit(req).await }
    };
    let start_drain = |req: pb::StartDrainRequest| {
        let mut c = d();
        async move { c.start_drain(req).await }
    };
    let batch = |queries: Vec<String>| {
        let mut c = p();
        async move {
            c.batch_match_patterns(pb::BatchMatchPatternsRequest {
                queries,
                ..Default::default()
            })
            .await
        }
    };
    let rollback = |req: pb::RollbackRequest| {
        let mut c = r();
        async move { c.rollback(req).await }
    };
    let mut c = p();
    let long_match = async move { c.match_pattern(match_req(&text(4097))).await };
    let mut c = p();
    let bad_min = async move {
        c.match_pattern(pb::MatchPatternRequest {
            query: "x".into(),
            min_confidence: Some(1.5),
            min_generation: 0,
            ..Default::default()
        })
        .await
    };
    let mut c = p();
    let huge = async move { c.match_pattern(match_req(&text(9 * 1024 * 1024))).await };
    let mut c = p();
    let get0 = async move {
        c.get_pattern(pb::GetPatternRequest {
            id: 0,
            ..Default::default()
        })
        .await
    };
    let mut c = p();
    let approve = async move {
        c.approve_pattern(pb::ApprovePatternRequest {
            id: 1,
            reason: text(201),
            ..Default::default()
        })
        .await
    };
    let mut c = p();
    let disable = async move {
        c.disable_pattern(pb::DisablePatternRequest {
            id: -1,
            reason: String::new(),
            ..Default::default()
        })
        .await
    };
    let mut c = p();
    let delete = async move {
        c.delete_pattern(pb::DeletePatternRequest {
            id: 1,
            reason: text(201),
        })
        .await
    };

    vec![
        invalid("MatchPattern.query: 4 KiB + 1", "query", long_match),
        invalid(
            "MatchPattern.min_confidence: 1.5",
            "min_confidence",
            bad_min,
        ),
        invalid(
            "BatchMatchPatterns.queries: 1,001",
            "queries",
            batch(vec!["q".into(); 1001]),
        ),
        invalid(
            "BatchMatchPatterns.queries[i]: 4 KiB + 1",
            "queries[2]",
            batch(vec!["a".into(), "b".into(), text(4097)]),
        ),
        invalid(
            "LearnPattern.query: empty",
            "query",
            learn(|r| r.query.clear()),
        ),
        invalid(
            "LearnPattern.query: 201 characters",
            "query",
            learn(|r| r.query = text(201)),
        ),
        invalid(
            "LearnPattern.query: < 3 once normalized",
            "query",
            learn(|r| r.query = "Ok!".into()),
        ),
        invalid(
            "LearnPattern.category: empty",
            "category",
            learn(|r| r.category = " ".into()),
        ),
        invalid(
            "LearnPattern.category: 51",
            "category",
            learn(|r| r.category = text(51)),
        ),
        invalid(
            "LearnPattern.confidence: below threshold",
            "confidence",
            learn(|r| r.confidence = 0.5),
        ),
        invalid(
            "LearnPattern.confidence: NaN",
            "confidence",
            learn(|r| r.confidence = f64::NAN),
        ),
        invalid(
            "LearnPattern.created_by: 51",
            "created_by",
            learn(|r| r.created_by = text(51)),
        ),
        invalid(
            "LearnPattern.metadata: > 16 KiB",
            "metadata",
            learn(|r| r.metadata = metadata_of(16 * 1024)),
        ),
        invalid(
            "ListPatterns.page_size: 1,001",
            "page_size",
            list_patterns(pb::ListPatternsRequest {
                page_size: 1001,
                ..Default::default()
            }),
        ),
        invalid(
            "ListPatterns.page_size: negative",
            "page_size",
            list_patterns(pb::ListPatternsRequest {
                page_size: -1,
                ..Default::default()
            }),
        ),
        invalid(
            "ListPatterns.page_token: not ours",
            "page_token",
            list_patterns(pb::ListPatternsRequest {
                page_token: "abc".into(),
                ..Default::default()
            }),
        ),
        invalid(
            "ListPatterns.category: 51",
            "category",
            list_patterns(pb::ListPatternsRequest {
                category: text(51),
                ..Default::default()
            }),
        ),
        invalid(
            "ListPatterns.status: unknown value",
            "status",
            list_patterns(pb::ListPatternsRequest {
                status: 99,
                ..Default::default()
            }),
        ),
        invalid("GetPattern.id: 0", "id", get0),
        invalid("ApprovePattern.reason: 201", "reason", approve),
        invalid("DisablePattern.id: negative", "id", disable),
        invalid("DeletePattern.reason: 201", "reason", delete),
        invalid(
            "Reload.target: unspecified",
            "target",
            reload(|r| r.target = 0),
        ),
        invalid(
            "Reload.target: unknown value",
            "target",
            reload(|r| r.target = 99),
        ),
        invalid(
            "Reload.reason: 201",
            "reason",
            reload(|r| r.reason = text(201)),
        ),
        invalid(
            "Reload.pattern_id: 0",
            "pattern_id",
            reload(|r| r.pattern_id = Some(0)),
        ),
        invalid(
            "Reload.full with pattern_id",
            "full",
            reload(|r| {
                r.full = true;
                r.pattern_id = Some(1)
            }),
        ),
        invalid(
            "Reload.broadcast with validate_only",
            "broadcast",
            reload(|r| {
                r.broadcast = true;
                r.validate_only = true
            }),
        ),
        invalid(
            "Reload.wait_for_fleet: > 5 minutes",
            "wait_for_fleet",
            reload(|r| {
                r.broadcast = true;
                r.wait_for_fleet = dur(301, 0)
            }),
        ),
        invalid(
            "Reload.wait_for_fleet: without broadcast",
            "wait_for_fleet",
            reload(|r| r.wait_for_fleet = dur(1, 0)),
        ),
        invalid(
            "Reload.database_url: on TARGET_PATTERNS",
            "database_url",
            reload(|r| r.database_url = "postgres://x/y".into()),
        ),
        invalid(
            "Reload(TARGET_STORE).database_url: unsupported scheme",
            "database_url",
            reload(|r| {
                r.target = pb::Target::Store.into();
                r.database_url = "mysql://db/x".into()
            }),
        ),
        invalid(
            "Rollback.target: unspecified",
            "target",
            rollback(pb::RollbackRequest::default()),
        ),
        invalid(
            "Rollback.reason: 201",
            "reason",
            rollback(pb::RollbackRequest {
                target: pb::Target::Patterns.into(),
                reason: text(201),
                ..Default::default()
            }),
        ),
        invalid(
            "StartDrain.reason: 201",
            "reason",
            start_drain(pb::StartDrainRequest {
                reason: text(201),
                ..Default::default()
            }),
        ),
        invalid(
            "StartDrain.grace: negative",
            "grace",
            start_drain(pb::StartDrainRequest {
                grace: dur(-1, 0),
                ..Default::default()
            }),
        ),
        invalid(
            "ListAudit.page_size: 1,001",
            "page_size",
            list_audit(pb::ListAuditRequest {
                page_size: 1001,
                ..Default::default()
            }),
        ),
        invalid(
            "ListAudit.page_token: not ours",
            "page_token",
            list_audit(pb::ListAuditRequest {
                page_token: "-3".into(),
                ..Default::default()
            }),
        ),
        invalid(
            "ListAudit.action: unknown",
            "action",
            list_audit(pb::ListAuditRequest {
                action: "explode".into(),
                ..Default::default()
            }),
        ),
        invalid(
            "ListAudit.caller: 201",
            "caller",
            list_audit(pb::ListAuditRequest {
                caller: text(201),
                ..Default::default()
            }),
        ),
        invalid(
            "ListAudit.until: not after since",
            "until",
            list_audit(pb::ListAuditRequest {
                since: ts(10, 0),
                until: ts(10, 0),
                ..Default::default()
            }),
        ),
        invalid(
            "ListAudit.since: invalid timestamp",
            "since",
            list_audit(pb::ListAuditRequest {
                since: ts(0, -5),
                ..Default::default()
            }),
        ),
        row("any request message: > 8 MiB", Code::OutOfRange, "", huge),
    ]
}

/// Every bus row: the payload and the rejection reason it is counted under.
fn bus_rows() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let big = format!(r#"{{"action":"reload","pad":"{}"}}"#, text(64 * 1024));
    vec![
        ("bus message: > 64 KiB", big.into_bytes(), "too_large"),
        ("bus message: not JSON", b"{reload".to_vec(), "not_json"),
        ("bus message: not UTF-8", b"\xff\xfe".to_vec(), "not_json"),
        ("bus message: not an object", b"[1]".to_vec(), "not_object"),
        (
            "bus message: pattern_id a string",
            br#"{"action":"reload","pattern_id":"12"}"#.to_vec(),
            "wrong_type",
        ),
        (
            "bus message: pattern_id negative",
            br#"{"action":"reload","pattern_id":-4}"#.to_vec(),
            "wrong_type",
        ),
        (
            "bus message: pattern_id beyond i64",
            br#"{"action":"reload","pattern_id":9223372036854775808}"#.to_vec(),
            "wrong_type",
        ),
        (
            "bus message: unknown action",
            br#"{"action":"explode"}"#.to_vec(),
            "unknown_action",
        ),
        (
            "bus message: other target",
            br#"{"action":"reload","target":"config"}"#.to_vec(),
            "unknown_action",
        ),
        (
            "bus message: invalidate without id",
            br#"{"action":"invalidate"}"#.to_vec(),
            "missing_pattern_id",
        ),
    ]
}

/// What must not change: every stored row and tombstone, and what is served.
async fn fingerprint(db: &TestDb, r: &mut HotReloadClient<Channel>) -> (String, u64, String) {
    let client = db.client().await;
    let rows = client
        .text(
            // Hit counts (times_used, last_used_at) are not content: matching bumps them.
            "SELECT string_agg(t::text, '|' ORDER BY id) FROM \
               (SELECT id, pattern, normalized_pattern, category, confidence, times_correct, \
                       accuracy, created_at, created_by, enabled, status, metadata, \
                       updated_at, revision FROM auto_learned_patterns) t",
        )
        .await
        .unwrap_or_default();
    let tombstones = client
        .int("SELECT count(*)::bigint FROM auto_learned_patterns_tombstones")
        .await;
    client.close().await;
    let current = r
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .targets
        .remove(0)
        .current
        .expect("a generation is served");
    (
        format!("{rows}#{tombstones}"),
        current.generation,
        current.content_hash,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_answers_its_code_and_field_and_changes_nothing() {
    let db = Arc::new(TestDb::postgres().await);
    let (redis, ch) = (redis_url(), channel("bad-input"));
    let mut config = bus_config(&db, &redis, &ch);
    config.watch_max_streams_per_caller = 2;
    // Forty-odd admin calls in a row: the per-caller rate limit (its rows are tests/it/auth.rs's)
    // must not answer before the field checks do.
    config.auth.admin_rate = 0.0;
    let mut app = crate::bus::start(config, &db).await;
    app.patterns
        .learn_pattern(learn_req("quali workflow sono attivi", "workflow", 0.95))
        .await
        .expect("learn the known pattern");
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let drain = DrainClient::new(channel);
    let before = fingerprint(&db, &mut app.reload).await;

    let mut failures = Vec::new();
    for row in grpc_rows(&app.patterns, &app.reload, &drain) {
        let got = match row.call.await {
            Ok(()) => {
                failures.push(format!("{}: accepted", row.input));
                continue;
            }
            Err(s) => s,
        };
        let field = got
            .get_error_details()
            .bad_request()
            .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
            .unwrap_or_default();
        if (got.code(), field.as_str()) != (row.code, row.field) {
            failures.push(format!(
                "{}: got {:?} field {field:?} ({}), want {:?} field {:?}",
                row.input,
                got.code(),
                got.message(),
                row.code,
                row.field
            ));
        }
    }

    // Streams per caller (2 here): the third WatchStatus from this peer is refused; closing one
    // frees its slot.
    let watch = || {
        let mut c = app.reload.clone();
        async move { c.watch_status(pb::WatchStatusRequest::default()).await }
    };
    let first = watch().await.expect("1st stream");
    let _second = watch().await.expect("2nd stream");
    match watch().await {
        Err(s) if s.code() == Code::ResourceExhausted => {}
        other => failures.push(format!(
            "WatchStatus: 3rd stream per caller: got {:?}",
            other.map(|_| ())
        )),
    }
    drop(first);
    eventually("a closed stream to free its slot", || async {
        watch().await.ok().map(drop)
    })
    .await;

    // Bus rows: each is counted under its reason and triggers nothing.
    let rejected = |s: &pb::GetStatusResponse| -> HashMap<String, u64> {
        s.bus.as_ref().expect("bus").rejected.clone()
    };
    for (input, payload, reason) in bus_rows() {
        let was = rejected(&status(&app).await)
            .get(reason)
            .copied()
            .unwrap_or(0);
        publish(&redis, &ch, payload).await;
        eventually(input, || async {
            let now = rejected(&status(&app).await)
                .get(reason)
                .copied()
                .unwrap_or(0);
            (now == was + 1).then_some(())
        })
        .await;
    }
    assert!(
        failures.is_empty(),
        "rows that failed:\n{}",
        failures.join("\n")
    );

    // Still serving, and nothing changed: rows, tombstones, generation and content hash.
    assert!(
        served(&mut app, "Quali workflow sono ATTIVI?")
            .await
            .is_some()
    );
    let after = fingerprint(&db, &mut app.reload).await;
    assert_eq!(after, before);
    let s = status(&app).await;
    assert!(
        !s.drain.expect("drain").draining,
        "no bad StartDrain drained"
    );
}

//! Patterns and HotReload over real gRPC, on PostgreSQL and SQLite.

use hotplane::pb::{self, PatternStatus};
use prost_types::{Struct, Value, value::Kind};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

use crate::{
    both_backends,
    helpers::{Backend, TestApp, eventually, learn_req, match_req, matches, reload_req},
};

/// The field named in an INVALID_ARGUMENT's BadRequest details.
fn bad_field(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .expect("BadRequest detail with a field")
}

async fn learn_match_disable_approve(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut req = learn_req("Quali sono i workflow attivi?", "workflow_status", 0.95);
    req.metadata = Some(Struct {
        fields: [(
            "action".to_owned(),
            Value {
                kind: Some(Kind::StringValue("list_workflows".into())),
            },
        )]
        .into(),
    });
    let learned = app
        .patterns
        .learn_pattern(req)
        .await
        .expect("learn")
        .into_inner();
    assert!(learned.created && learned.served);
    let id = learned.pattern.as_ref().expect("row").id;

    // Served before LearnPattern returned: no reload needed.
    let m = matches(&mut app, "  quali sono i WORKFLOW attivi  ").await;
    assert!(m.matched, "{m:?}");
    assert_eq!(m.normalized_query, "quali sono i workflow attivi");
    let p = m.pattern.expect("pattern");
    assert_eq!((p.id, p.category.as_str()), (id, "workflow_status"));
    let action = p
        .metadata
        .as_ref()
        .and_then(|s| s.fields.get("action"))
        .and_then(|v| v.kind.clone());
    assert_eq!(action, Some(Kind::StringValue("list_workflows".into())));
    assert!(m.generation >= learned.generation);

    let disabled = app
        .patterns
        .disable_pattern(pb::DisablePatternRequest {
            id,
            reason: "wrong".into(),
            ..Default::default()
        })
        .await
        .expect("disable")
        .into_inner();
    assert_eq!(
        disabled.pattern.expect("row").status,
        PatternStatus::Disabled as i32
    );
    assert!(
        !matches(&mut app, "quali sono i workflow attivi")
            .await
            .matched
    );

    app.patterns
        .approve_pattern(pb::ApprovePatternRequest {
            id,
            reason: "ok".into(),
            ..Default::default()
        })
        .await
        .expect("approve");
    assert!(
        matches(&mut app, "quali sono i workflow attivi?")
            .await
            .matched
    );

    // Learning the same normalized text again updates the row instead of inserting.
    let again = app
        .patterns
        .learn_pattern(learn_req(
            "QUALI sono i workflow attivi!",
            "workflows",
            0.97,
        ))
        .await
        .expect("learn again")
        .into_inner();
    assert!(!again.created && again.updated);
    assert_eq!(again.pattern.expect("row").id, id);
    assert_eq!(
        matches(&mut app, "quali sono i workflow attivi")
            .await
            .pattern
            .expect("p")
            .category,
        "workflows"
    );

    let got = app
        .patterns
        .get_pattern(pb::GetPatternRequest {
            id,
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert!(got.served);
    let list = app
        .patterns
        .list_patterns(pb::ListPatternsRequest {
            status: PatternStatus::Approved.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        list.patterns.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![id]
    );

    app.patterns
        .delete_pattern(pb::DeletePatternRequest {
            id,
            reason: "gone".into(),
        })
        .await
        .expect("delete");
    assert!(
        !matches(&mut app, "quali sono i workflow attivi")
            .await
            .matched
    );
    for status in [
        app.patterns
            .get_pattern(pb::GetPatternRequest {
                id,
                ..Default::default()
            })
            .await
            .expect_err("gone"),
        app.patterns
            .delete_pattern(pb::DeletePatternRequest {
                id,
                reason: String::new(),
            })
            .await
            .expect_err("gone"),
        app.patterns
            .approve_pattern(pb::ApprovePatternRequest {
                id,
                reason: String::new(),
                ..Default::default()
            })
            .await
            .expect_err("gone"),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    app.stop().await.expect("clean stop");
}

async fn list_paginates_and_filters(backend: Backend) {
    let mut app = TestApp::spawn_with(backend, |c| c.learn_auto_approve = false).await;
    for i in 0..5 {
        let cat = if i % 2 == 0 { "even" } else { "odd" };
        let r = app
            .patterns
            .learn_pattern(learn_req(&format!("pattern number {i}"), cat, 0.99))
            .await
            .expect("learn")
            .into_inner();
        // auto-approve off: stored as pending and not served
        assert!(!r.served);
        assert_eq!(
            r.pattern.expect("row").status,
            PatternStatus::Pending as i32
        );
    }
    assert!(!matches(&mut app, "pattern number 1").await.matched);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .patterns
            .list_patterns(pb::ListPatternsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.patterns.len() <= 2);
        seen.extend(page.patterns.iter().map(|p| p.pattern.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    let odd = app
        .patterns
        .list_patterns(pb::ListPatternsRequest {
            category: "odd".into(),
            status: PatternStatus::Pending.into(),
            ..Default::default()
        })
        .await
        .expect("filtered")
        .into_inner();
    assert_eq!(odd.patterns.len(), 2);
    let err = app
        .patterns
        .list_patterns(pb::ListPatternsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(bad_field(&err), "page_token");
}

async fn bad_input_is_refused_and_loses_nothing(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    app.patterns
        .learn_pattern(learn_req("stato del sistema", "status", 0.95))
        .await
        .expect("learn");
    let before = app.engine.current().number;

    // Learning rules name the field at fault.
    for (req, field) in [
        (
            learn_req("stato del sistema oggi", "status", 0.89),
            "confidence",
        ),
        (learn_req("stato del sistema oggi", "", 0.95), "category"),
        (learn_req("ok?", "status", 0.95), "query"),
        (learn_req(&"x".repeat(201), "status", 0.95), "query"),
    ] {
        let err = app.patterns.learn_pattern(req).await.expect_err("rejected");
        assert_eq!(bad_field(&err), field, "{err:?}");
    }
    // Matching: empty is simply not matched; oversize is refused.
    let empty = matches(&mut app, "   ?!  ").await;
    assert!(!empty.matched && empty.normalized_query.is_empty());
    let err = app
        .patterns
        .match_pattern(match_req(&"a".repeat(4097)))
        .await
        .expect_err("too big");
    assert_eq!(bad_field(&err), "query");
    let err = app
        .patterns
        .match_pattern(pb::MatchPatternRequest {
            min_confidence: Some(1.5),
            ..match_req("x")
        })
        .await
        .expect_err("bad confidence");
    assert_eq!(bad_field(&err), "min_confidence");
    let err = app
        .patterns
        .match_pattern(pb::MatchPatternRequest {
            min_generation: before + 100,
            ..match_req("stato del sistema")
        })
        .await
        .expect_err("too new");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = app
        .patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: vec!["q".into(); 1001],
            ..Default::default()
        })
        .await
        .expect_err("batch too big");
    assert_eq!(bad_field(&err), "queries");
    let err = app
        .patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: vec!["ok".into(), "b".repeat(5000)],
            ..Default::default()
        })
        .await
        .expect_err("item too big");
    assert_eq!(bad_field(&err), "queries[1]");
    // Reload arguments.
    let err = app
        .reload
        .reload(pb::ReloadRequest::default())
        .await
        .expect_err("no target");
    assert_eq!(bad_field(&err), "target");
    let err = app
        .reload
        .reload(reload_req(false, Some(0)))
        .await
        .expect_err("bad id");
    assert_eq!(bad_field(&err), "pattern_id");
    let err = app
        .reload
        .reload(pb::ReloadRequest {
            target: pb::Target::Config.into(),
            ..Default::default()
        })
        .await
        .expect_err("started without --config");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("--config"), "{}", err.message());
    let err = app
        .patterns
        .get_pattern(pb::GetPatternRequest {
            id: -1,
            ..Default::default()
        })
        .await
        .expect_err("bad id");
    assert_eq!(bad_field(&err), "id");

    // Nothing changed, and the learned pattern is still served.
    assert_eq!(app.engine.current().number, before);
    assert!(matches(&mut app, "stato del sistema").await.matched);
}

async fn batch_match_answers_from_one_generation(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    app.patterns
        .learn_pattern(learn_req("errori del giorno", "errors", 0.95))
        .await
        .expect("learn");
    let r = app
        .patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: vec![
                "Errori del giorno?".into(),
                "nothing here".into(),
                String::new(),
            ],
            ..Default::default()
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(
        r.results.iter().map(|m| m.matched).collect::<Vec<_>>(),
        vec![true, false, false]
    );
    assert_eq!(r.generation, app.engine.current().number);
}

async fn hits_reach_the_database_in_batches(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let id = app
        .patterns
        .learn_pattern(learn_req("conta questi colpi", "hits", 0.95))
        .await
        .expect("learn")
        .into_inner()
        .pattern
        .expect("row")
        .id;
    for _ in 0..7 {
        assert!(matches(&mut app, "conta questi colpi").await.matched);
    }
    let batch = app
        .patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: vec!["conta questi colpi".into(); 3],
            ..Default::default()
        })
        .await
        .expect("batch")
        .into_inner();
    assert!(batch.results.iter().all(|r| r.matched));
    let mut patterns = app.patterns.clone();
    let row = eventually("10 hits flushed to the store", || {
        let mut patterns = patterns.clone();
        async move {
            let p = patterns
                .get_pattern(pb::GetPatternRequest {
                    id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .pattern?;
            (p.times_used == 10).then_some(p)
        }
    })
    .await;
    assert!(row.last_used_at.is_some());
    // Hit counts are not served content: no new generation, and the row's revision is unchanged.
    let learned_gen = app.engine.current().number;
    let status = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.store.expect("store").hits_pending, 0);
    assert_eq!(app.engine.current().number, learned_gen);
    let _ = patterns
        .get_pattern(pb::GetPatternRequest {
            id,
            ..Default::default()
        })
        .await
        .expect("still there");
}

async fn health_and_status_report_generations(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    for service in [
        "",
        "hotplane.v1.Patterns",
        "hotplane.v1.HotReload",
        "hotplane.v1.Drain",
    ] {
        let r = app
            .health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(
            r.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    let status = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(!status.instance_id.is_empty());
    let t = &status.targets[0];
    assert_eq!(t.target, pb::Target::Patterns as i32);
    let cur = t.current.as_ref().expect("first generation");
    assert_eq!(cur.generation, 1);
    assert_eq!(cur.source, pb::ReloadSource::Startup as i32);
    assert_eq!(cur.mode, pb::LoadMode::Full as i32);
    assert_eq!(cur.content_hash.len(), 16);
    assert!(t.last_error.is_empty() && t.last_success_at.is_some());
    assert_eq!(
        status.store.expect("store").backend,
        match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    );

    // A reload of an unchanged store is a no-op: same generation, nothing read.
    let r = app
        .reload
        .reload(reload_req(false, None))
        .await
        .expect("reload")
        .into_inner();
    assert_eq!(
        (r.generation_before, r.generation_after, r.changed),
        (1, 1, false)
    );
    assert_eq!(r.mode, pb::LoadMode::Noop as i32);
    // validate_only reports without swapping.
    let v = app
        .reload
        .reload(pb::ReloadRequest {
            validate_only: true,
            ..reload_req(true, None)
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(v.validate_only && v.generation_after == 1);
    app.patterns
        .learn_pattern(learn_req("nuovo pattern qui", "x", 0.95))
        .await
        .expect("learn");
    let status = app
        .reload
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let t = &status.targets[0];
    assert_eq!(t.current.as_ref().expect("cur").generation, 2);
    assert_eq!(
        t.current.as_ref().expect("cur").source,
        pb::ReloadSource::Write as i32
    );
    assert_eq!(t.retained.first().map(|g| g.generation), Some(1));
}

async fn concurrent_reloads_coalesce(backend: Backend) {
    // A burst on purpose: coalescing is under test here, not the per-caller rate limit (auth.rs).
    let app = TestApp::spawn_with(backend, |c| c.auth.admin_rate = 0.0).await;
    let before = app.engine.health().loads_total;
    const N: usize = 100;
    let calls = (0..N).map(|_| {
        let mut client = app.reload.clone();
        tokio::spawn(async move {
            client
                .reload(reload_req(true, None))
                .await
                .map(|r| r.into_inner())
        })
    });
    let results = futures_join_all(calls.collect()).await;
    let coalesced = results.iter().filter(|r| r.coalesced).count();
    let loads = app.engine.health().loads_total - before;
    // Single flight: requests that arrive while a load runs share the next one, so a burst of
    // N concurrent requests costs a handful of loads, never N.
    assert!(
        loads as usize <= N / 5,
        "{N} concurrent reloads cost {loads} loads"
    );
    assert_eq!(
        coalesced + loads as usize,
        N,
        "every request was served by exactly one load"
    );
}

async fn futures_join_all(
    handles: Vec<tokio::task::JoinHandle<Result<pb::ReloadResponse, tonic::Status>>>,
) -> Vec<pb::ReloadResponse> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task").expect("reload succeeds"));
    }
    out
}

both_backends!(
    learn_match_disable_approve,
    list_paginates_and_filters,
    bad_input_is_refused_and_loses_nothing,
    batch_match_answers_from_one_generation,
    hits_reach_the_database_in_batches,
    health_and_status_report_generations,
    concurrent_reloads_coalesce,
);

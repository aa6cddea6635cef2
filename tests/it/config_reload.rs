//! Live config: `Reload(TARGET_CONFIG)` re-reads the `--config` file. A live key changes what
//! the next request sees; an invalid file changes nothing; restart-only keys are named; a
//! normalizer change never makes queries and served keys disagree.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use hotplane::pb::{self, EventKind};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::helpers::{Backend, DEADLINE, TestApp, eventually, learn_req, matches};

/// A config file in a temporary directory.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hotplane.toml");
        let file = ConfigFile { _dir: dir, path };
        file.write(text);
        file
    }

    /// Replaces the file's content (write and rename: a reader never sees half a file).
    fn write(&self, text: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.path).expect("rename config");
    }
}

async fn spawn(backend: Backend, text: &str) -> (TestApp, ConfigFile) {
    let file = ConfigFile::new(text);
    let path = file.path.clone();
    let app = TestApp::spawn_with(backend, |c| c.config_file = Some(path)).await;
    (app, file)
}

fn config_req() -> pb::ReloadRequest {
    pb::ReloadRequest {
        target: pb::Target::Config.into(),
        reason: "test".into(),
        ..Default::default()
    }
}

async fn reload(app: &TestApp, req: pb::ReloadRequest) -> Result<pb::ReloadResponse, Status> {
    app.reload
        .clone()
        .reload(req)
        .await
        .map(tonic::Response::into_inner)
}

async fn status(app: &TestApp) -> pb::GetStatusResponse {
    app.reload
        .clone()
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// TARGET_CONFIG in GetStatus.targets.
fn config_target(s: &pb::GetStatusResponse) -> &pb::TargetStatus {
    s.targets
        .iter()
        .find(|t| t.target == pb::Target::Config as i32)
        .expect("TARGET_CONFIG in targets")
}

fn keys(changes: &[pb::ConfigChange]) -> Vec<&str> {
    changes.iter().map(|c| c.key.as_str()).collect()
}

/// The BadRequest field violations of an error, as (field, reason).
fn violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .map(|br| {
            br.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn learn(app: &TestApp, query: &str, confidence: f64) -> Result<i64, Status> {
    app.patterns
        .clone()
        .learn_pattern(learn_req(query, "workflow", confidence))
        .await
        .map(|r| r.into_inner().pattern.expect("pattern").id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_learn_threshold_and_log_filter_apply_on_reload() {
    let (app, file) = spawn(
        Backend::Sqlite,
        "[learn]\nmin_confidence = 0.9\n[log]\nfilter = \"info\"\n",
    )
    .await;
    let err = learn(&app, "quali workflow sono attivi", 0.8)
        .await
        .expect_err("0.8 is below 0.9");
    assert_eq!(err.code(), Code::InvalidArgument);
    let before = status(&app).await;
    let target = config_target(&before);
    let first = target.current.as_ref().expect("generation 1 from start");
    assert_eq!(first.generation, 1);
    assert_eq!(first.source, pb::ReloadSource::Startup as i32);
    assert_eq!(before.config.as_ref().expect("config").log_filter, "info");

    let mut watch = app
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest {
            targets: vec![pb::Target::Config.into()],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let snapshot = watch.message().await.expect("stream").expect("snapshot");
    assert_eq!(snapshot.kind, EventKind::Snapshot as i32);

    file.write("[learn]\nmin_confidence = 0.7\n[log]\nfilter = \"info,hotplane=debug\"\n");
    let r = reload(&app, config_req()).await.expect("reload");
    assert_eq!((r.generation_before, r.generation_after), (1, 2));
    assert!(r.changed);
    assert_eq!(
        keys(&r.config_applied),
        ["log.filter", "learn.min_confidence"]
    );
    let threshold = &r.config_applied[1];
    assert_eq!(
        (threshold.old_value.as_str(), threshold.new_value.as_str()),
        ("0.9", "0.7")
    );
    assert!(r.config_restart_required.is_empty(), "{r:?}");
    assert_eq!(r.config_path, file.path.display().to_string());

    // The next request sees the new threshold.
    learn(&app, "quali workflow sono attivi", 0.8)
        .await
        .expect("0.8 passes the threshold 0.7");
    let after = status(&app).await;
    let config = after.config.as_ref().expect("config");
    assert_eq!(config.learn_min_confidence, 0.7);
    assert_eq!(config.log_filter, "info,hotplane=debug");
    let current = config_target(&after).current.as_ref().expect("current");
    assert_eq!(current.generation, 2);
    assert_eq!(current.source, pb::ReloadSource::Grpc as i32);
    assert_eq!(current.item_count, 2, "two keys set");

    // WatchStatus saw the reload start and succeed, for target CONFIG.
    let mut seen = Vec::new();
    while !seen.contains(&(EventKind::ReloadSucceeded as i32)) {
        let e = tokio::time::timeout(DEADLINE, watch.message())
            .await
            .expect("event before the deadline")
            .expect("stream")
            .expect("open");
        assert_eq!(e.target, pb::Target::Config as i32, "{e:?}");
        if e.kind == EventKind::ReloadSucceeded as i32 {
            assert_eq!(e.generation.as_ref().expect("generation").generation, 2);
        }
        seen.push(e.kind);
    }
    assert_eq!(
        seen,
        [
            EventKind::ReloadStarted as i32,
            EventKind::ReloadSucceeded as i32
        ]
    );

    // The same file again: nothing changes, no new generation.
    let same = reload(&app, config_req()).await.expect("reload");
    assert_eq!((same.generation_before, same.generation_after), (2, 2));
    assert!(!same.changed && same.config_applied.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_words_change_match_answers_and_never_rekey_served_patterns() {
    let (mut app, file) = spawn(
        Backend::Sqlite,
        "[normalize]\nprofile = \"default\"\nstop_words = []\n",
    )
    .await;
    let id = learn(&app, "Workflow attivi", 0.95).await.expect("learn");
    let m = matches(&mut app, "workflow attivi please").await;
    assert!(!m.matched);
    assert_eq!(m.normalized_query, "workflow attivi please");

    // "please" re-keys no served pattern: applied, and the query now matches.
    file.write("[normalize]\nprofile = \"default\"\nstop_words = [\"please\"]\n");
    let r = reload(&app, config_req()).await.expect("reload");
    assert_eq!(keys(&r.config_applied), ["normalize.stop_words"]);
    let m = matches(&mut app, "workflow attivi please").await;
    assert!(m.matched, "{m:?}");
    assert_eq!(m.normalized_query, "workflow attivi");
    assert_eq!(m.pattern.expect("pattern").id, id);
    // Learning uses the new normalizer too, so what it stores is what queries look up.
    let report = learn(&app, "Report mensile please", 0.95)
        .await
        .expect("learn");
    let m = matches(&mut app, "report mensile").await;
    assert_eq!(m.pattern.map(|p| p.id), Some(report));

    // "attivi" would re-key the served "workflow attivi": rejected, naming the row, and the
    // running normalizer keeps answering as before.
    file.write("[normalize]\nprofile = \"default\"\nstop_words = [\"please\", \"attivi\"]\n");
    let err = reload(&app, config_req())
        .await
        .expect_err("re-keys a served row");
    assert_eq!(err.code(), Code::InvalidArgument);
    let v = violations(&err);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, "normalize.stop_words");
    assert!(
        v[0].1.contains(&format!("id {id}")) && v[0].1.contains("\"workflow attivi\""),
        "{v:?}"
    );
    assert!(matches(&mut app, "workflow attivi").await.matched);
    let m = matches(&mut app, "workflow attivi please").await;
    assert_eq!(
        m.normalized_query, "workflow attivi",
        "please is still a stop word"
    );
    let config = status(&app).await.config.expect("config");
    assert_eq!(config.stop_words, ["please"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_rejected_whole_and_the_old_config_keeps_serving() {
    let (app, file) = spawn(Backend::Sqlite, "[learn]\nmin_confidence = 0.9\n").await;
    let cases = [
        // A wrong type.
        (
            "[learn]\nmin_confidence = \"low\"\n",
            "learn.min_confidence",
            "invalid type",
        ),
        // Out of range.
        (
            "[learn]\nmin_confidence = 1.5\n",
            "learn.min_confidence",
            "between 0 and 1",
        ),
        // A typo, next to a valid change that must not apply either.
        (
            "[learn]\nmin_confidence = 0.5\nmin_confidense = 0.5\n",
            "learn.min_confidense",
            "unknown key",
        ),
        // A cross-key rule.
        (
            "[learn]\nmin_confidence = 0.5\n[fleet]\nheartbeat = \"30s\"\nttl = \"10s\"\n",
            "fleet.ttl",
            "longer than fleet.heartbeat",
        ),
    ];
    for (n, (text, key, reason)) in cases.iter().enumerate() {
        file.write(text);
        let err = reload(&app, config_req()).await.expect_err(text);
        assert_eq!(err.code(), Code::InvalidArgument, "{text}: {err:?}");
        let v = violations(&err);
        assert!(
            v.iter().any(|(f, r)| f == key && r.contains(reason)),
            "{text}: {v:?}"
        );
        // Behaviour, not just status: the threshold is still 0.9.
        let refused = learn(&app, "quali workflow sono attivi", 0.8)
            .await
            .expect_err("still 0.9");
        assert_eq!(refused.code(), Code::InvalidArgument);
        let s = status(&app).await;
        let t = config_target(&s);
        assert_eq!(t.current.as_ref().expect("current").generation, 1);
        assert_eq!(t.consecutive_failures as usize, n + 1);
        assert!(t.last_error.contains(key), "{}", t.last_error);
        assert_eq!(s.config.expect("config").learn_min_confidence, 0.9);
    }

    // An unreadable file: FAILED_PRECONDITION, nothing changes.
    std::fs::remove_file(&file.path).expect("remove");
    let err = reload(&app, config_req()).await.expect_err("no file");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("reading"), "{}", err.message());

    // A good file again: applied, and the failure streak ends.
    file.write("[learn]\nmin_confidence = 0.5\n");
    reload(&app, config_req()).await.expect("valid again");
    learn(&app, "quali workflow sono attivi", 0.8)
        .await
        .expect("threshold 0.5");
    let s = status(&app).await;
    let t = config_target(&s);
    assert_eq!(t.consecutive_failures, 0);
    assert_eq!(t.failures_total, 5);
    assert!(t.last_error.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_keys_are_named_and_validate_only_changes_nothing() {
    let (app, file) = spawn(Backend::Sqlite, "[learn]\nmin_chars = 3\n").await;
    file.write(
        "[server]\nlisten = \"127.0.0.1:1\"\n[database]\nmax_connections = 3\n\
         [learn]\nmin_chars = 5\n",
    );
    let r = reload(&app, config_req()).await.expect("reload");
    assert_eq!(keys(&r.config_applied), ["learn.min_chars"]);
    assert_eq!(
        keys(&r.config_restart_required),
        ["server.listen", "database.max_connections"]
    );
    let listen = &r.config_restart_required[0];
    assert_eq!(listen.old_value, "127.0.0.1:0");
    assert_eq!(listen.new_value, "127.0.0.1:1");
    assert!(listen.restart_reason.contains("restart"), "{listen:?}");
    // Still serving where it started (this very client), and status keeps the reminder.
    let config = status(&app).await.config.expect("config");
    assert_eq!(config.learn_min_chars, 5);
    assert_eq!(
        keys(&config.restart_pending),
        ["server.listen", "database.max_connections"]
    );

    // validate_only reports what would change and changes nothing.
    file.write("[learn]\nmin_chars = 7\n");
    let check = reload(
        &app,
        pb::ReloadRequest {
            validate_only: true,
            ..config_req()
        },
    )
    .await
    .expect("validate");
    assert!(check.validate_only);
    assert_eq!(check.generation_after, check.generation_before);
    let change = &check.config_applied[0];
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value.as_str(),
            change.new_value.as_str()
        ),
        ("learn.min_chars", "5", "7")
    );
    assert!(
        check.config_restart_required.is_empty(),
        "back to the running values"
    );
    assert_eq!(
        status(&app).await.config.expect("config").learn_min_chars,
        5
    );

    // Pattern options do not apply to the config target.
    let err = reload(
        &app,
        pb::ReloadRequest {
            full: true,
            ..config_req()
        },
    )
    .await
    .expect_err("full");
    assert_eq!(violations(&err)[0].0, "full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_config_file_reload_config_says_how_to_set_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let err = reload(&app, config_req()).await.expect_err("no --config");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("--config"), "{}", err.message());
    let s = status(&app).await;
    assert!(config_target(&s).current.is_none());
    let config = s.config.expect("config");
    assert!(config.path.is_empty());
    assert_eq!(config.learn_min_confidence, 0.9, "the flags' values");
}

/// MatchPattern keeps answering while the config is reloaded over and over: no request fails,
/// and every answer is one that the old or the new normalizer gives (never a mix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_under_load_during_config_reloads_never_fails() {
    let (app, file) = spawn(Backend::Postgres, "[normalize]\nstop_words = []\n").await;
    let id = learn(&app, "workflow attivi", 0.95).await.expect("learn");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (mut client, stop, answered) = (
            app.patterns.clone(),
            Arc::clone(&stop),
            Arc::clone(&answered),
        );
        workers.push(tokio::spawn(async move {
            let (mut failures, mut odd, mut hits, mut misses) = (0u64, 0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match client
                    .match_pattern(crate::helpers::match_req("Workflow attivi please"))
                    .await
                {
                    Err(_) => failures += 1,
                    Ok(r) => {
                        let r = r.into_inner();
                        match (r.matched, r.normalized_query.as_str()) {
                            (true, "workflow attivi")
                                if r.pattern.as_ref().map(|p| p.id) == Some(id) =>
                            {
                                hits += 1
                            }
                            (false, "workflow attivi please") => misses += 1,
                            _ => odd += 1,
                        }
                    }
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
            (failures, odd, hits, misses)
        }));
    }
    for round in 0..20 {
        let words = if round % 2 == 0 { "[\"please\"]" } else { "[]" };
        let threshold = if round % 2 == 0 { "0.8" } else { "0.9" };
        file.write(&format!(
            "[normalize]\nstop_words = {words}\n[learn]\nmin_confidence = {threshold}\n"
        ));
        reload(&app, config_req()).await.expect("reload");
        // Let some requests run under this config before the next reload.
        let seen = answered.load(Ordering::Relaxed);
        eventually("requests between reloads", || {
            let answered = Arc::clone(&answered);
            async move { (answered.load(Ordering::Relaxed) >= seen + 20).then_some(()) }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut failures, mut odd, mut hits, mut misses) = (0, 0, 0, 0);
    for w in workers {
        let (f, o, h, m) = w.await.expect("worker");
        (failures, odd, hits, misses) = (failures + f, odd + o, hits + h, misses + m);
    }
    assert_eq!(failures, 0, "no request failed");
    assert_eq!(odd, 0, "every answer is the old or the new normalizer's");
    assert!(
        hits > 0 && misses > 0,
        "both configs served: {hits} hits, {misses} misses"
    );
    let t = status(&app).await;
    assert_eq!(
        config_target(&t)
            .current
            .as_ref()
            .expect("current")
            .generation,
        21
    );
}

/// A new poll interval takes effect without a restart: a row written behind hotplane's back
/// (no bus) is picked up only by the poll, which the file first sets to an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_poll_interval_applies_without_a_restart() {
    let (mut app, file) = spawn(Backend::Sqlite, "[poll]\ninterval = \"1h\"\n").await;
    crate::helpers::sql(
        &app.db,
        &[&crate::bus::insert(77, "written behind our back")],
    )
    .await;
    assert!(!matches(&mut app, "written behind our back").await.matched);

    file.write("[poll]\ninterval = \"20ms\"\n");
    let r = reload(&app, config_req()).await.expect("reload");
    assert_eq!(r.config_applied[0].key, "poll.interval");
    assert_eq!(r.config_applied[0].new_value, "20ms");
    let found = crate::bus::wait_served(&mut app, "written behind our back").await;
    assert_eq!(found.id, 77);
    let generation = crate::helpers::patterns_status(&app)
        .await
        .current
        .expect("current");
    assert_eq!(generation.source, pb::ReloadSource::Poll as i32);
}

/// New fleet timing applies at once: the heartbeat, an hour apart at start, follows the new
/// interval, and the entry in Redis gets the new TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_fleet_heartbeat_and_ttl_apply_without_a_restart() {
    let db = Arc::new(crate::db::TestDb::postgres().await);
    let ch = crate::bus::channel("hotplane:config-fleet");
    let file = ConfigFile::new("[fleet]\nheartbeat = \"1h\"\nttl = \"2h\"\n");
    let mut config = crate::bus::bus_config(&db, &crate::bus::redis_url(), &ch);
    config.config_file = Some(file.path.clone());
    let app = crate::bus::start(config, &db).await;
    let fleet = |s: pb::GetStatusResponse| s.fleet.expect("fleet");
    let first = eventually("the first heartbeat", || async {
        let f = fleet(status(&app).await);
        (f.members.len() == 1).then_some(f.read_at)
    })
    .await;

    file.write("[fleet]\nheartbeat = \"20ms\"\nttl = \"5s\"\n");
    let r = reload(&app, config_req()).await.expect("reload");
    assert_eq!(keys(&r.config_applied), ["fleet.heartbeat", "fleet.ttl"]);
    // Several heartbeats, with no load in between to cause them (the poll is off).
    let seen = std::sync::Mutex::new(vec![first]);
    eventually("heartbeats at the new interval", || async {
        let at = fleet(status(&app).await).read_at;
        let mut seen = seen.lock().expect("not poisoned");
        if !seen.contains(&at) {
            seen.push(at);
        }
        (seen.len() >= 4).then_some(())
    })
    .await;
    let id = status(&app).await.instance_id;
    let client = redis::Client::open(crate::bus::redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(format!("{ch}:fleet:{id}"))
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(
        ttl_ms > 0 && ttl_ms <= 5000,
        "the new TTL, not 2h: {ttl_ms} ms"
    );
    let c = status(&app).await.config.expect("config");
    assert_eq!(c.fleet_ttl.expect("ttl").seconds, 5);
}

/// Per-caller rate limits change live: a caller held by the limit goes through once the file
/// lifts it, and is held again when the file restores one (no fresh burst from a reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_change_without_a_restart() {
    let (app, file) = spawn(
        Backend::Sqlite,
        "[limits]\nadmin_rate = 0.001\nadmin_burst = 3\n",
    )
    .await;
    learn(&app, "quali workflow sono attivi", 0.95)
        .await
        .expect("1 of 3");
    learn(&app, "quanti nodi nel cluster", 0.95)
        .await
        .expect("2 of 3");
    // The reload itself is a state change: the third call of the burst.
    file.write("[limits]\nadmin_rate = 0\nadmin_burst = 3\n");
    let r = reload(&app, config_req()).await.expect("3 of 3");
    assert_eq!(keys(&r.config_applied), ["limits.admin_rate"]);
    for n in 0..5 {
        learn(&app, &format!("report numero {n}"), 0.95)
            .await
            .expect("no limit now");
    }
    file.write("[limits]\nadmin_rate = 0.001\nadmin_burst = 1\n");
    reload(&app, config_req()).await.expect("no limit yet");
    let held = learn(&app, "ancora uno", 0.95)
        .await
        .expect_err("limited again, the bucket still empty");
    assert_eq!(held.code(), Code::ResourceExhausted, "{held:?}");
    let c = status(&app).await.config.expect("config");
    assert_eq!((c.admin_rate, c.admin_burst), (0.001, 1));
}

/// The audit trail records every attempted config reload: who, the config generations, and the
/// keys at fault for a rejected file (validate_only and a missing --config are not changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reloads_are_audited() {
    let (app, file) = spawn(Backend::Sqlite, "[learn]\nmin_chars = 3\n").await;
    file.write("[learn]\nmin_chars = 4\n");
    reload(&app, config_req()).await.expect("applied");
    reload(
        &app,
        pb::ReloadRequest {
            validate_only: true,
            ..config_req()
        },
    )
    .await
    .expect("checked only");
    file.write("[learn]\nmin_chars = 0\n");
    reload(&app, config_req()).await.expect_err("rejected");
    let req = pb::ListAuditRequest {
        action: "config_reload".into(),
        ..Default::default()
    };
    let rows = eventually("two config_reload rows", || {
        let (mut client, req) = (app.reload.clone(), req.clone());
        async move {
            let rows = client.list_audit(req).await.ok()?.into_inner().entries;
            (rows.len() >= 2).then_some(rows)
        }
    })
    .await;
    assert_eq!(rows.len(), 2, "validate_only is not recorded: {rows:?}");
    let (applied, rejected) = if rows[0].result == "ok" {
        (&rows[0], &rows[1])
    } else {
        (&rows[1], &rows[0])
    };
    assert_eq!(applied.result, "ok", "{rows:?}");
    assert_eq!(
        (applied.generation_before, applied.generation_after),
        (1, 2)
    );
    assert_eq!(applied.target, "config");
    assert_eq!(applied.source, "grpc");
    assert_eq!(applied.reason, "test");
    assert!(applied.caller.starts_with("loopback"), "{applied:?}");
    assert_eq!(rejected.result, "failed");
    assert!(rejected.error.contains("learn.min_chars"), "{rejected:?}");
    assert_eq!(
        (rejected.generation_before, rejected.generation_after),
        (2, 2)
    );
}

/// Flag > env > file > default: a key set by a flag (or an environment variable: clap reports
/// both the same way) is pinned, so the file's value for it is ignored, at start and on every
/// reload, and both say which key is pinned and by what. A ConfigMap edit that cannot take
/// effect is never silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_pins_its_key_over_the_config_file_and_reloads_report_it() {
    let file = ConfigFile::new("[learn]\nmin_confidence = 0.8\nmin_chars = 4\n");
    let db = crate::db::TestDb::sqlite().await;
    let path = file.path.display().to_string();
    let cli = hotplane::config::Cli::try_parse_args([
        "hotplane",
        "--learn-min-confidence",
        "0.5",
        "--database-url",
        db.url(),
        "--listen",
        "127.0.0.1:0",
        "--config",
        &path,
    ])
    .expect("flags parse");
    let app = TestApp::start(cli.config, db).await;
    app.wait_ready().await;
    let config = status(&app).await.config.expect("config status");
    assert_eq!(
        config.learn_min_confidence, 0.5,
        "the flag wins over the file"
    );
    assert_eq!(config.learn_min_chars, 4, "the file wins over the default");
    learn(&app, "quali workflow sono attivi", 0.6)
        .await
        .expect("0.6 passes the flag's threshold");
    let pinned = |list: &[pb::ConfigChange]| -> Vec<(String, String, String, String)> {
        list.iter()
            .map(|c| {
                let c = c.clone();
                (c.key, c.old_value, c.new_value, c.pinned_by)
            })
            .collect()
    };
    let expected = |file_value: &str| {
        vec![(
            "learn.min_confidence".to_owned(),
            "0.5".to_owned(),
            file_value.to_owned(),
            "--learn-min-confidence".to_owned(),
        )]
    };
    assert_eq!(
        pinned(&config.pinned),
        expected("0.8"),
        "reported from start"
    );

    // A ConfigMap edit of the pinned key: the reload says it cannot take effect; the other
    // key's edit applies.
    file.write(
        "[learn]
min_confidence = 0.7
min_chars = 5
",
    );
    let answer = reload(&app, config_req()).await.expect("reload");
    assert_eq!(pinned(&answer.config_pinned), expected("0.7"), "{answer:?}");
    let applied: Vec<&str> = answer
        .config_applied
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(applied, ["learn.min_chars"]);
    let config = status(&app).await.config.expect("config status");
    assert_eq!(config.learn_min_confidence, 0.5);
    assert_eq!(config.learn_min_chars, 5);
    assert_eq!(pinned(&config.pinned), expected("0.7"));

    // Deleting the key from the file: nothing pinned to report any more.
    file.write(
        "[learn]
min_chars = 5
",
    );
    let answer = reload(&app, config_req()).await.expect("reload");
    assert!(answer.config_pinned.is_empty(), "{answer:?}");
}

//! The scripts in `grpcurl-examples/`, run as a user runs them: real grpcurl against a real
//! server, in the README's walk-through order (learn → match → reload → status → health), with
//! assertions on what a user would notice in the output. Also checks that every hotplane.v1
//! service, RPC, message, field and enum value has a comment visible through reflection, since
//! grpcurl users read the API's documentation there.
//!
//! grpcurl must be installed: `scripts/test.sh` puts grpcurl 1.8.6 in `.tools/bin`. Without it
//! these tests fail with a message saying so; they never skip.
//!
//! Reading grpcurl's JSON: int64/uint64 fields are strings ("id": "1"), and fields holding their
//! default value (false, 0, "", an empty list) are left out, so an absent "matched" means false.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
};

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{Backend, DEADLINE, TestApp, sql};

/// What learn.sh learns, as match.sh's query normalizes to.
const NORMALIZED: &str = "quali sono i workflow attivi";
/// The category learn.sh learns.
const CATEGORY: &str = "workflow_status";
/// The services `grpcurl list` must show.
const SERVICES: [&str; 4] = [
    "hotplane.v1.HotReload",
    "hotplane.v1.Patterns",
    "hotplane.v1.Drain",
    "grpc.health.v1.Health",
];
/// grpcurl's exit code for an RPC that failed with NOT_FOUND: 64 + the gRPC code (5).
const EXIT_NOT_FOUND: i32 = 64 + 5;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding grpcurl: the first on PATH, else `.tools/bin` as installed by
/// `scripts/test.sh`. Panics when there is none: a missing grpcurl must fail the run.
fn grpcurl_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([repo_root().join(".tools").join("bin")])
        .find(|dir| dir.join("grpcurl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "grpcurl not found on PATH nor at {}: run ./scripts/test.sh (it installs \
                 grpcurl 1.8.6 there), or put grpcurl 1.8+ on PATH",
                repo_root().join(".tools/bin/grpcurl").display()
            )
        })
}

/// One finished script or grpcurl run.
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with the run's output unless it exited 0.
    #[track_caller]
    fn success(self) -> Run {
        assert!(
            self.code == Some(0),
            "{} failed (exit {:?})\nstderr:\n{}\nstdout:\n{}",
            self.what,
            self.code,
            self.stderr,
            self.stdout
        );
        self
    }

    /// The JSON documents on stdout (grpcurl prints one per response).
    #[track_caller]
    fn json(self) -> Vec<Value> {
        let run = self.success();
        serde_json::Deserializer::from_str(&run.stdout)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}):\n{}", run.what, run.stdout))
    }

    /// The single JSON document on stdout.
    #[track_caller]
    fn one(self) -> Value {
        let what = self.what.clone();
        let mut docs = self.json();
        assert_eq!(docs.len(), 1, "{what}: expected one JSON answer: {docs:#?}");
        docs.remove(0)
    }

    /// Asserts that grpcurl failed with this gRPC code and a message containing `text`.
    #[track_caller]
    fn failed_with(&self, code: &str, text: &str) {
        assert!(
            self.code != Some(0)
                && self.stderr.contains(&format!("Code: {code}"))
                && self.stderr.contains(text),
            "{}: expected a {code} error mentioning {text:?}, got exit {:?}\nstderr:\n{}\nstdout:\n{}",
            self.what,
            self.code,
            self.stderr,
            self.stdout
        );
    }
}

/// Runs the example scripts and grpcurl against one server, with grpcurl first on PATH.
struct Examples {
    addr: String,
    grpcurl: PathBuf,
    path: OsString,
}

impl Examples {
    fn new(app: &TestApp) -> Examples {
        let dir = grpcurl_dir();
        let mut dirs = vec![dir.clone()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Examples {
            addr: app.addr.to_string(),
            grpcurl: dir.join("grpcurl"),
            path: std::env::join_paths(dirs).expect("PATH entries are joinable"),
        }
    }

    /// Runs `program` with a clean environment: PATH, HOTPLANE_ADDR and `env` only, so the
    /// caller's QUERY, PATTERN_ID etc. cannot change what the scripts send.
    async fn exec(&self, what: String, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOTPLANE_ADDR", &self.addr)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(DEADLINE, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("{what} could not be started: {e}"));
        Run {
            what,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `grpcurl-examples/<script> args...`, as `./script` (so it must be executable).
    async fn script_env(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let path = repo_root().join("grpcurl-examples").join(script);
        let what = format!("grpcurl-examples/{script} {}", args.join(" "))
            .trim_end()
            .to_owned();
        self.exec(what, &path, args, env).await
    }

    async fn script(&self, script: &str, args: &[&str]) -> Run {
        self.script_env(script, args, &[]).await
    }

    /// Runs `grpcurl -plaintext ADDR args...`.
    async fn grpcurl(&self, args: &[&str]) -> Run {
        let mut all = vec!["-plaintext", &self.addr];
        all.extend_from_slice(args);
        let what = format!("grpcurl {}", all.join(" "));
        self.exec(what, &self.grpcurl, &all, &[]).await
    }
}

/// The string at `ptr`; panics showing the document if it is absent or not a string.
#[track_caller]
fn text<'a>(doc: &'a Value, ptr: &str) -> &'a str {
    doc.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr} in {doc:#}"))
}

/// The integer at `ptr` (grpcurl prints 64-bit integers as strings); 0 when absent.
#[track_caller]
fn num(doc: &Value, ptr: &str) -> i64 {
    match doc.pointer(ptr) {
        None => 0,
        Some(Value::String(s)) => s
            .parse()
            .unwrap_or_else(|e| panic!("{ptr} = {s:?} is not an integer ({e}) in {doc:#}")),
        Some(v) => v
            .as_i64()
            .unwrap_or_else(|| panic!("{ptr} is not an integer in {doc:#}")),
    }
}

/// The boolean at `ptr`; false when absent.
fn flag(doc: &Value, ptr: &str) -> bool {
    doc.pointer(ptr).is_some_and(|v| v == &Value::Bool(true))
}

/// Asserts a MatchPattern answer matched pattern `id` with learn.sh's category.
#[track_caller]
fn assert_matched(m: &Value, id: i64) {
    assert!(flag(m, "/matched"), "expected a match: {m:#}");
    assert_eq!(num(m, "/pattern/id"), id, "{m:#}");
    assert_eq!(text(m, "/pattern/category"), CATEGORY, "{m:#}");
    assert_eq!(text(m, "/normalizedQuery"), NORMALIZED, "{m:#}");
    assert_eq!(
        text(m, "/pattern/metadata/action"),
        "list_workflows",
        "{m:#}"
    );
}

/// Asserts a MatchPattern answer did not match, yet still reports the normalized query.
#[track_caller]
fn assert_not_matched(m: &Value) {
    assert!(!flag(m, "/matched"), "expected no match: {m:#}");
    assert!(
        m.get("pattern").is_none(),
        "no pattern without a match: {m:#}"
    );
    assert_eq!(text(m, "/normalizedQuery"), NORMALIZED, "{m:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_scripts_walk_through() {
    // The server runs with a config file, so reload_config.sh has something to re-read.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hotplane.toml");
    std::fs::write(&config, "[learn]\nmin_confidence = 0.9\n").expect("write config");
    let file = config.clone();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.config_file = Some(file)).await;
    let ex = Examples::new(&app);

    // Discovery: the services, and the API documentation that comes with them.
    let list = ex.script("list.sh", &[]).await.success().stdout;
    for service in SERVICES {
        assert!(
            list.lines().any(|l| l.trim() == service),
            "list.sh does not show {service}:\n{list}"
        );
    }
    let describe = ex.script("describe.sh", &[]).await.success().stdout;
    for expected in [
        "rpc MatchPattern ( .hotplane.v1.MatchPatternRequest )",
        "// Normalizes a query and looks it up in the current snapshot.",
        "message MatchPatternRequest {",
        "// The query text as the user typed it",
    ] {
        assert!(
            describe.contains(expected),
            "describe.sh output lacks {expected:?}:\n{describe}"
        );
    }

    // Learn: created, approved and served before the call returns.
    let learned = ex.script("learn.sh", &[]).await.one();
    assert!(flag(&learned, "/created"), "{learned:#}");
    assert!(flag(&learned, "/served"), "{learned:#}");
    let id = num(&learned, "/pattern/id");
    assert!(id > 0, "{learned:#}");
    assert_eq!(text(&learned, "/pattern/normalizedPattern"), NORMALIZED);
    assert_eq!(text(&learned, "/pattern/category"), CATEGORY);
    assert_eq!(text(&learned, "/pattern/status"), "PATTERN_STATUS_APPROVED");
    assert_eq!(text(&learned, "/pattern/createdBy"), "manual");
    let id_arg = id.to_string();
    // A proposal below the confidence threshold is refused, naming the rule.
    ex.script_env("learn.sh", &[], &[("CONFIDENCE", "0.5")])
        .await
        .failed_with("InvalidArgument", "confidence");

    // Match: the differently written query normalizes to the learned text.
    let m = ex.script("match.sh", &[]).await.one();
    assert_matched(&m, id);
    assert!(
        num(&m, "/generation") >= num(&learned, "/generation"),
        "{m:#}"
    );
    let batch = ex.script("batch_match.sh", &[]).await.one();
    let results = batch["results"].as_array().expect("results array");
    assert_eq!(results.len(), 2, "one result per query: {batch:#}");
    assert!(flag(&results[0], "/matched"), "{batch:#}");
    assert_eq!(num(&results[0], "/pattern/id"), id, "{batch:#}");
    assert!(!flag(&results[1], "/matched"), "{batch:#}");
    assert_eq!(
        text(&results[1], "/normalizedQuery"),
        "che tempo fa a milano"
    );
    assert!(num(&batch, "/generation") > 0, "{batch:#}");

    // Read it back, alone and in the list.
    let got = ex.script("get_pattern.sh", &[&id_arg]).await.one();
    assert_eq!(num(&got, "/pattern/id"), id, "{got:#}");
    assert!(flag(&got, "/served"), "{got:#}");
    let page = ex.script("list_patterns.sh", &[]).await.one();
    let ids: Vec<i64> = page["patterns"]
        .as_array()
        .map(|rows| rows.iter().map(|r| num(r, "/id")).collect())
        .unwrap_or_default();
    assert_eq!(ids, [id], "{page:#}");
    assert!(
        page.get("nextPageToken").is_none(),
        "one page only: {page:#}"
    );

    // Disable: kept but no longer served, at once. Approve: served again, at once.
    let disabled = ex.script("disable.sh", &[&id_arg]).await.one();
    assert_eq!(
        text(&disabled, "/pattern/status"),
        "PATTERN_STATUS_DISABLED"
    );
    assert!(!flag(&disabled, "/pattern/enabled"), "{disabled:#}");
    let m = ex.script("match.sh", &[]).await.one();
    assert_not_matched(&m);
    assert!(num(&m, "/generation") >= num(&disabled, "/generation"));
    let approved = ex.script("approve.sh", &[&id_arg]).await.one();
    assert_eq!(
        text(&approved, "/pattern/status"),
        "PATTERN_STATUS_APPROVED"
    );
    assert!(flag(&approved, "/pattern/enabled"), "{approved:#}");
    let m = ex.script("match.sh", &[]).await.one();
    assert_matched(&m, id);
    assert!(num(&m, "/generation") >= num(&approved, "/generation"));

    // Reload: another service inserts a pattern with SQL; the delta reload serves it, the next
    // reloads find nothing new, and validate_only swaps nothing.
    sql(
        &app.db,
        &[
            "INSERT INTO auto_learned_patterns (pattern, normalized_pattern, category, confidence, \
           status) VALUES ('Opening hours?', 'opening hours', 'opening_hours', 0.97, 'approved')",
        ],
    )
    .await;
    let reloads = ex.script("reload.sh", &[&id_arg]).await.json();
    assert_eq!(
        reloads.len(),
        4,
        "delta, full, one pattern, validate_only: {reloads:#?}"
    );
    for r in &reloads {
        assert_eq!(text(r, "/target"), "TARGET_PATTERNS", "{r:#}");
        assert_eq!(num(r, "/current/itemCount"), 2, "{r:#}");
    }
    let [delta, full, single, validate] = &reloads[..] else {
        unreachable!("length checked above")
    };
    assert_eq!(text(delta, "/mode"), "LOAD_MODE_DELTA", "{delta:#}");
    assert!(flag(delta, "/changed"), "{delta:#}");
    assert_eq!(num(delta, "/added"), 1, "{delta:#}");
    let generation = num(delta, "/generationAfter");
    assert!(generation > num(delta, "/generationBefore"), "{delta:#}");
    assert_eq!(text(full, "/mode"), "LOAD_MODE_FULL", "{full:#}");
    assert_eq!(text(single, "/mode"), "LOAD_MODE_SINGLE", "{single:#}");
    assert!(flag(validate, "/validateOnly"), "{validate:#}");
    for r in [full, single, validate] {
        assert!(
            !flag(r, "/changed"),
            "nothing changed since the delta: {r:#}"
        );
        assert_eq!(num(r, "/generationBefore"), generation, "{r:#}");
        assert_eq!(num(r, "/generationAfter"), generation, "{r:#}");
    }
    let content_hash = text(delta, "/current/contentHash");
    let opening = ex.script("match.sh", &["Opening hours?"]).await.one();
    assert!(flag(&opening, "/matched"), "{opening:#}");
    assert_eq!(text(&opening, "/pattern/category"), "opening_hours");

    // Status: the generation and content hash the reloads reported, loaded without errors.
    let status = ex.script("status.sh", &[]).await.one();
    assert!(!text(&status, "/instanceId").is_empty(), "{status:#}");
    assert_eq!(text(&status, "/store/backend"), "sqlite", "{status:#}");
    let target = &status["targets"][0];
    assert_eq!(text(target, "/target"), "TARGET_PATTERNS", "{status:#}");
    assert_eq!(num(target, "/current/generation"), generation, "{status:#}");
    assert_eq!(text(target, "/current/contentHash"), content_hash);
    assert!(
        content_hash.len() >= 8 && content_hash.chars().all(|c| c.is_ascii_hexdigit()),
        "content hash is hex: {content_hash:?}"
    );
    assert_eq!(num(target, "/current/itemCount"), 2, "{status:#}");
    assert!(target.get("lastError").is_none(), "{status:#}");

    // Health: the whole server and one service.
    let health = ex.script("health.sh", &[]).await.json();
    assert_eq!(health.len(), 2, "overall and one service: {health:#?}");
    for h in &health {
        assert_eq!(text(h, "/status"), "SERVING", "{h:#}");
    }

    // Watch: a snapshot first; resuming from an event id replays what followed it.
    let watched = ex.script_env("watch.sh", &[], &[("MAX_TIME", "1")]).await;
    watched.failed_with("DeadlineExceeded", "");
    assert!(
        watched.stdout.contains("EVENT_KIND_SNAPSHOT"),
        "{}",
        watched.stdout
    );
    let resumed = ex
        .script_env("watch.sh", &["1"], &[("MAX_TIME", "1")])
        .await;
    assert!(
        resumed.stdout.contains("EVENT_KIND_PATTERN_LEARNED")
            && !resumed.stdout.contains("EVENT_KIND_SNAPSHOT"),
        "resume from event 1 replays the events after it: {}",
        resumed.stdout
    );

    // Rollback: the previous generation is served again, pinned; a reload unpins.
    let rolled = ex.script("rollback.sh", &[]).await.one();
    assert!(flag(&rolled, "/pinned"), "{rolled:#}");
    assert_eq!(
        text(&rolled, "/current/source"),
        "RELOAD_SOURCE_ROLLBACK",
        "{rolled:#}"
    );
    let pinned = ex.script("status.sh", &[]).await.one();
    assert!(flag(&pinned, "/targets/0/pinned"), "{pinned:#}");
    ex.script("reload.sh", &[]).await.success();
    let unpinned = ex.script("status.sh", &[]).await.one();
    assert!(!flag(&unpinned, "/targets/0/pinned"), "{unpinned:#}");
    assert_matched(&ex.script("match.sh", &[]).await.one(), id);

    // Drain: out of rotation (health NOT_SERVING, matching refused), then back.
    let started = ex.script("drain.sh", &["start"]).await.one();
    assert!(flag(&started, "/completed"), "{started:#}");
    assert!(flag(&started, "/status/draining"), "{started:#}");
    assert_eq!(
        text(&started, "/status/reason"),
        "grpcurl example",
        "{started:#}"
    );
    let not_serving = ex.script("health.sh", &[]).await.json();
    assert!(
        not_serving
            .iter()
            .all(|h| text(h, "/status") == "NOT_SERVING"),
        "{not_serving:#?}"
    );
    ex.script("match.sh", &[])
        .await
        .failed_with("Unavailable", "draining");
    let drain_status = ex.script("drain.sh", &["status"]).await.one();
    assert!(flag(&drain_status, "/status/draining"), "{drain_status:#}");
    let stopped = ex.script("drain.sh", &["stop"]).await.one();
    assert!(!flag(&stopped, "/status/draining"), "{stopped:#}");
    assert_matched(&ex.script("match.sh", &[]).await.one(), id);

    // Live config: edit the file, reload it; an invalid file changes nothing.
    std::fs::write(&config, "[learn]\nmin_confidence = 0.6\n").expect("write config");
    let reloads = ex.script("reload_config.sh", &[]).await.json();
    assert_eq!(reloads.len(), 2, "{reloads:#?}");
    for (doc, validate_only) in reloads.iter().zip([true, false]) {
        assert_eq!(flag(doc, "/validateOnly"), validate_only, "{doc:#}");
        assert_eq!(
            text(doc, "/configApplied/0/key"),
            "learn.min_confidence",
            "{doc:#}"
        );
        assert_eq!(text(doc, "/configApplied/0/newValue"), "0.6", "{doc:#}");
    }
    assert_eq!(num(&reloads[1], "/generationAfter"), 2, "{:#}", reloads[1]);
    ex.script_env("learn.sh", &[], &[("CONFIDENCE", "0.65")])
        .await
        .success();
    let status = ex.script("status.sh", &[]).await.one();
    assert_eq!(
        text(&status, "/targets/1/target"),
        "TARGET_CONFIG",
        "{status:#}"
    );
    assert_eq!(
        status
            .pointer("/config/learnMinConfidence")
            .and_then(Value::as_f64),
        Some(0.6),
        "{status:#}"
    );
    std::fs::write(&config, "[learn]\nmin_confidence = 2\n").expect("write config");
    ex.script("reload_config.sh", &[])
        .await
        .failed_with("InvalidArgument", "learn.min_confidence");

    // Delete: gone from the store and from matching; reading it again is NOT_FOUND.
    let deleted = ex.script("delete.sh", &[&id_arg]).await.one();
    assert_eq!(num(&deleted, "/id"), id, "{deleted:#}");
    assert!(num(&deleted, "/generation") > generation, "{deleted:#}");
    let gone = ex.script("get_pattern.sh", &[&id_arg]).await;
    gone.failed_with("NotFound", &format!("pattern {id} does not exist"));
    assert_eq!(
        gone.code,
        Some(EXIT_NOT_FOUND),
        "grpcurl exits 64 + gRPC code"
    );
    assert_not_matched(&ex.script("match.sh", &[]).await.one());

    // Audit: the delete is recorded, by whom and for which pattern; filters narrow the list.
    let target = format!("pattern:{id}");
    let audited = crate::helpers::eventually("the delete in the audit trail", || async {
        let page = ex.script("audit.sh", &["pattern_delete"]).await.one();
        let entries = page.pointer("/entries")?.as_array()?.clone();
        entries
            .iter()
            .any(|e| text(e, "/target") == target)
            .then_some(entries)
    })
    .await;
    assert!(
        audited
            .iter()
            .all(|e| text(e, "/action") == "pattern_delete"),
        "{audited:#?}"
    );
    let row = audited
        .iter()
        .find(|e| text(e, "/target") == target)
        .expect("found");
    assert_eq!(text(row, "/caller"), "loopback:127.0.0.1", "{row:#}");
    assert_eq!(text(row, "/result"), "ok", "{row:#}");
    let all = ex
        .script_env("audit.sh", &[], &[("PAGE_SIZE", "2")])
        .await
        .one();
    assert_eq!(
        all.pointer("/entries")
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(2),
        "{all:#}"
    );
    assert!(!text(&all, "/nextPageToken").is_empty(), "{all:#}");
}

/// The connection swaps and the broadcast rollback, on a server with a Redis bus:
/// `reload_store.sh` reconnects to the current database and moves to another one and back;
/// `reload_bus.sh` validates, then swaps, the Redis connection; `rollback.sh` with
/// `BROADCAST=true` and `WAIT` rolls back the fleet (here, this one replica) and waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_and_broadcast_rollback_scripts() {
    let db = std::sync::Arc::new(crate::db::TestDb::sqlite().await);
    let redis = crate::bus::redis_url();
    let mut config = crate::bus::bus_config(&db, &redis, &crate::bus::channel("hotplane:grpcurl"));
    config.fleet_heartbeat = std::time::Duration::from_millis(100);
    let app = crate::bus::start(config, &db).await;
    let ex = Examples::new(&app);
    let learned = ex.script("learn.sh", &[]).await.one();
    let id = num(&learned, "/pattern/id");

    // The store: reconnect, then move to an empty database, then back.
    let same = ex.script("reload_store.sh", &[]).await.one();
    assert_eq!(text(&same, "/target"), "TARGET_STORE", "{same:#}");
    assert_eq!(num(&same, "/current/itemCount"), 1, "{same:#}");
    let other = crate::db::TestDb::sqlite().await;
    let moved = ex.script("reload_store.sh", &[other.url()]).await.one();
    assert_eq!(num(&moved, "/current/itemCount"), 0, "{moved:#}");
    assert!(flag(&moved, "/changed"), "{moved:#}");
    let status = ex.script("status.sh", &[]).await.one();
    assert_eq!(text(&status, "/store/url"), other.url(), "{status:#}");
    ex.script("reload_store.sh", &[db.url()]).await.success();
    assert_matched(&ex.script("match.sh", &[]).await.one(), id);

    // The bus: validate, then swap (to the same Redis, given explicitly).
    let swaps = ex.script("reload_bus.sh", &[&redis]).await.json();
    assert_eq!(swaps.len(), 2, "validate_only, then the swap: {swaps:#?}");
    for r in &swaps {
        assert_eq!(text(r, "/target"), "TARGET_BUS", "{r:#}");
        assert_eq!(text(r, "/redisUrl"), redis, "{r:#}");
        assert_eq!(text(r, "/previousRedisUrl"), redis, "{r:#}");
    }
    assert!(flag(&swaps[0], "/validateOnly"), "{:#}", swaps[0]);
    let status = ex.script("status.sh", &[]).await.one();
    assert_eq!(num(&status, "/bus/swaps"), 1, "{status:#}");
    assert!(flag(&status, "/bus/connected"), "{status:#}");
    ex.script("reload_bus.sh", &["redis://127.0.0.1:1"])
        .await
        .failed_with("FailedPrecondition", "keeps running");

    // Broadcast rollback, waiting for the fleet.
    let rolled = ex
        .script_env(
            "rollback.sh",
            &[],
            &[("BROADCAST", "true"), ("WAIT", "10s")],
        )
        .await
        .one();
    assert!(flag(&rolled, "/pinned"), "{rolled:#}");
    assert!(rolled.get("publishError").is_none(), "{rolled:#}");
    assert!(flag(&rolled, "/fleetConverged"), "{rolled:#}");
    let hash = text(&rolled, "/current/contentHash");
    let fleet = rolled["fleet"].as_array().expect("fleet listed");
    assert_eq!(fleet.len(), 1, "{rolled:#}");
    assert_eq!(text(&fleet[0], "/contentHash"), hash, "{rolled:#}");
}

/// The declarations in one `grpcurl describe` output that lack a comment: the described element
/// itself (the line after "X is a ...:") and every rpc, field and enum value line (the lines
/// ending in ';'), each of which must directly follow a `//` line.
fn undocumented(symbol: &str, describe: &str) -> Vec<String> {
    let lines: Vec<&str> = describe.lines().map(str::trim).collect();
    let is_comment = |i: usize| lines.get(i).is_some_and(|l| l.starts_with("//"));
    let mut missing = Vec::new();
    if !is_comment(1) {
        missing.push(format!("{symbol} itself"));
    }
    for (i, line) in lines.iter().enumerate() {
        let declaration = line.ends_with(';')
            && !line.starts_with("//")
            && !line.starts_with("option ")
            && !line.starts_with("reserved ");
        if declaration && (i == 0 || !is_comment(i - 1)) {
            missing.push(format!("{symbol}: {line}"));
        }
    }
    missing
}

/// The hotplane.v1 types a describe output refers to (`.hotplane.v1.Name`).
fn references(describe: &str) -> impl Iterator<Item = String> + '_ {
    describe.split(".hotplane.v1.").skip(1).map(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        format!("hotplane.v1.{}", name.trim_end_matches('.'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_and_field_has_a_comment_visible_through_reflection() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ex = Examples::new(&app);

    let list = ex.grpcurl(&["list"]).await.success().stdout;
    let services: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("hotplane.v1."))
        .map(str::to_owned)
        .collect();
    assert_eq!(services.len(), 3, "three hotplane.v1 services:\n{list}");

    // Describe every service, then every type reachable from them.
    let mut seen: BTreeSet<String> = services.iter().cloned().collect();
    let mut queue = services.clone();
    let mut missing = Vec::new();
    while let Some(symbol) = queue.pop() {
        let out = ex.grpcurl(&["describe", &symbol]).await.success().stdout;
        if services.contains(&symbol) {
            assert!(out.contains("rpc "), "{symbol} has no RPCs:\n{out}");
        }
        missing.extend(undocumented(&symbol, &out));
        for r in references(&out) {
            if seen.insert(r.clone()) {
                queue.push(r);
            }
        }
    }
    for t in [
        "hotplane.v1.MatchPatternRequest",
        "hotplane.v1.Pattern",
        "hotplane.v1.PatternStatus",
        "hotplane.v1.GenerationInfo",
        "hotplane.v1.Target",
        "hotplane.v1.DrainStatus",
        "hotplane.v1.WatchStatusResponse",
    ] {
        assert!(
            seen.contains(t),
            "{t} was not reached from the services: {seen:?}"
        );
    }
    assert!(
        missing.is_empty(),
        "declarations without a comment in `grpcurl describe` (add a // comment above each in \
         proto/hotplane/v1/):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_comment_check_finds_undeclared_docs() {
    let describe = "hotplane.v1.Example is a message:\n\
                    message Example {\n\
                    \x20 // Documented.\n\
                    \x20 string documented = 1;\n\
                    \x20 .hotplane.v1.Target bare = 2;\n\
                    }\n";
    assert_eq!(
        undocumented("hotplane.v1.Example", describe),
        [
            "hotplane.v1.Example itself",
            "hotplane.v1.Example: .hotplane.v1.Target bare = 2;",
        ]
    );
    assert_eq!(
        references(describe).collect::<Vec<_>>(),
        ["hotplane.v1.Target"]
    );
}

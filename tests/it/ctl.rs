//! `hotplane ctl`, the real binary run as a child process against a real server: tables and
//! `--json`, learn and match, reload and rollback, drain, patterns, audit, the errors (one line
//! naming the field) and their exit codes, tokens, and `watch` across a server restart and
//! ending on Ctrl-C.

use std::{process::Output, process::Stdio, time::Duration};

use hotplane::{config::Config, pb};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::{
    auth::{ADMIN_TOKEN, READ_TOKEN, tokens_file},
    helpers::{Backend, DEADLINE, TestApp, eventually, learn_req, send_signal},
};

/// The exit codes docs/cli.md promises.
const OK: i32 = 0;
const REFUSED: i32 = 1;
const USAGE: i32 = 2;
const UNAVAILABLE: i32 = 3;
const AUTH: i32 = 4;

/// `hotplane ctl ARGS --addr ADDR` with `env` and nothing inherited that would change where or
/// how it connects.
fn command(addr: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotplane"));
    cmd.arg("ctl").args(args).args(["--addr", addr]);
    for var in [
        "HOTPLANE_ADDR",
        "HOTPLANE_TOKEN",
        "HOTPLANE_LISTEN",
        "HOTPLANE_CLIENT_TLS",
        "HOTPLANE_CLIENT_TLS_CA",
        "HOTPLANE_CLIENT_TLS_CERT",
        "HOTPLANE_CLIENT_TLS_KEY",
        "HOTPLANE_CLIENT_TLS_SERVER_NAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).kill_on_drop(true);
    cmd
}

/// Runs a ctl command to its end.
async fn ctl_env(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = tokio::time::timeout(DEADLINE, command(&app.addr.to_string(), args, env).output())
        .await
        .expect("hotplane ctl ends before the deadline")
        .expect("hotplane ctl runs");
    Run::from(out)
}

async fn ctl(app: &TestApp, args: &[&str]) -> Run {
    ctl_env(app, args, &[]).await
}

/// What a run printed and how it exited.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Exit 0, nothing on stderr; the stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(OK), "{self:?}");
        assert_eq!(self.stderr, "", "{self:?}");
        &self.stdout
    }

    /// Exit 0; stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("JSON ({e}): {self:?}"))
    }

    /// Exits `code` with one line on stderr holding every one of `words`, nothing on stdout.
    fn fails(&self, code: i32, words: &[&str]) -> &str {
        assert_eq!(self.code, Some(code), "{self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        for word in words {
            assert!(self.stderr.contains(word), "{word:?} in {self:?}");
        }
        &self.stderr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_a_table_and_json() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let status = crate::helpers::status(&app).await;
    let text = ctl(&app, &["status"]).await;
    let text = text.ok();
    assert!(text.contains(&status.instance_id), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("patterns "))
        .unwrap_or_else(|| panic!("a patterns row: {text}"));
    let generation = status.targets[0]
        .current
        .as_ref()
        .expect("loaded")
        .generation;
    assert_eq!(
        row.split_whitespace().nth(1),
        Some(generation.to_string().as_str()),
        "{row}"
    );
    let json = ctl(&app, &["status", "--json"]).await.json();
    assert_eq!(json["instance_id"], status.instance_id.as_str());
    assert_eq!(json["targets"][0]["target"], "TARGET_PATTERNS");
    assert_eq!(json["targets"][0]["current"]["generation"], generation);
    assert_eq!(json["store"]["backend"], "postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learn_then_match_another_spelling_one_and_in_a_batch() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let learned = ctl(
        &app,
        &[
            "learn",
            "Quali sono i workflow attivi?",
            "--category",
            "workflow_status",
            "--confidence",
            "0.95",
            "--metadata",
            r#"{"action":"list_workflows"}"#,
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(learned["created"], true);
    assert_eq!(learned["served"], true);
    let id = learned["pattern"]["id"].as_i64().expect("an id");

    let one = ctl(
        &app,
        &["match", "  quali sono i WORKFLOW attivi!", "--json"],
    )
    .await
    .json();
    assert_eq!(one["matched"], true, "{one}");
    assert_eq!(one["pattern"]["id"], id);
    assert_eq!(one["pattern"]["metadata"]["action"], "list_workflows");
    assert_eq!(one["generation"], learned["generation"]);

    let text = ctl(&app, &["match", "QUALI sono i workflow attivi"]).await;
    let row = text.ok().lines().nth(1).expect("a row").to_owned();
    assert!(
        row.contains(" yes ") && row.contains("workflow_status"),
        "{row}"
    );

    let batch = ctl(
        &app,
        &[
            "match",
            "quali sono i workflow ATTIVI",
            "something else",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(batch["results"][0]["matched"], true, "{batch}");
    assert_eq!(batch["results"][0]["pattern"]["id"], id);
    assert_eq!(batch["results"][1]["matched"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_rollback_move_the_generation() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    for text in ["first pattern here", "second pattern here"] {
        app.patterns
            .learn_pattern(learn_req(text, "cat", 0.95))
            .await
            .expect("learn");
    }
    let served = |r: Run| r.json()["matched"].as_bool().expect("matched");
    let before = crate::helpers::patterns_status(&app)
        .await
        .current
        .expect("loaded");

    let back = ctl(&app, &["rollback", "--json"]).await.json();
    assert_eq!(back["generation_before"], before.generation);
    assert_eq!(back["current"]["generation"], before.generation + 1);
    assert_eq!(back["pinned"], true);
    assert!(!served(
        ctl(&app, &["match", "second pattern here", "--json"]).await
    ));

    let dry = ctl(&app, &["reload", "--full", "--validate-only", "--json"])
        .await
        .json();
    assert_eq!(dry["validate_only"], true);
    assert_eq!(dry["generation_after"], before.generation + 1, "{dry}");

    let text = ctl(&app, &["reload", "--full"]).await;
    let expected = format!(
        "patterns generation {} -> {}: changed",
        before.generation + 1,
        before.generation + 2
    );
    assert!(text.ok().starts_with(&expected), "{text:?}");
    assert!(served(
        ctl(&app, &["match", "second pattern here", "--json"]).await
    ));

    ctl(&app, &["rollback", "--to", "999"])
        .await
        .fails(REFUSED, &["NOT_FOUND", "999"]);
    ctl(&app, &["reload", "--pattern-id", "424242"])
        .await
        .fails(REFUSED, &["NOT_FOUND", "424242"]);
}

/// `reload --broadcast --wait-for-fleet`: two replicas on one bus answer converged (exit 0); a
/// member that never converges (a stale registry entry) ends the wait unmet: the table names
/// it, and the exit status is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_broadcast_waits_for_the_fleet_and_exits_1_when_it_does_not_converge() {
    use crate::bus::{bus_config, channel, redis_url, register_member, start};
    let db = std::sync::Arc::new(crate::db::TestDb::sqlite().await);
    let ch = channel("hotplane:ctl-fleet");
    let config = || {
        let mut c = bus_config(&db, &redis_url(), &ch);
        c.fleet_heartbeat = Duration::from_millis(100);
        c.fleet_ttl = Duration::from_secs(3);
        c
    };
    let a = start(config(), &db).await;
    let _b = start(config(), &db).await;
    eventually("two members", || async {
        let fleet = crate::helpers::status(&a).await.fleet.expect("a fleet");
        (fleet.members.len() == 2).then_some(())
    })
    .await;
    let waited = ctl(
        &a,
        &["reload", "--broadcast", "--wait-for-fleet", "10s", "--json"],
    )
    .await
    .json();
    assert_eq!(waited["fleet_converged"], true, "{waited}");
    assert_eq!(
        waited["fleet"].as_array().map(Vec::len),
        Some(2),
        "{waited}"
    );

    let ghost = r#"{"instance_id":"ghost","addr":"10.0.0.9:50051","generation":1,
        "content_hash":"0","store_revision":-1,"item_count":0,"draining":false,
        "updated_at_ms":0}"#;
    register_member(&ch, "ghost", ghost).await;
    let run = ctl(&a, &["reload", "--broadcast", "--wait-for-fleet", "300ms"]).await;
    assert_eq!(run.code, Some(REFUSED), "{run:?}");
    assert!(run.stdout.contains("fleet NOT converged"), "{run:?}");
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("ghost "))
        .unwrap_or_else(|| panic!("the ghost's row: {run:?}"));
    assert!(row.contains(" no "), "{row}");
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    redis::cmd("DEL")
        .arg(format!("{ch}:fleet:ghost"))
        .query_async::<()>(&mut conn)
        .await
        .expect("remove the ghost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_start_status_and_stop() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let started = ctl(&app, &["drain", "start", "--reason", "node maintenance"]).await;
    assert!(started.ok().contains("draining since"), "{started:?}");
    let status = ctl(&app, &["drain", "status", "--json"]).await.json();
    assert_eq!(status["status"]["draining"], true);
    assert_eq!(status["status"]["reason"], "node maintenance");
    // New work is refused while draining: unavailable, with the server's retry hint.
    ctl(&app, &["match", "anything at all"])
        .await
        .fails(UNAVAILABLE, &["UNAVAILABLE", "retry in"]);
    let stopped = ctl(&app, &["drain", "stop"]).await;
    assert!(stopped.ok().starts_with("serving"), "{stopped:?}");
    let status = ctl(&app, &["drain", "status", "--json"]).await.json();
    assert_eq!(status["status"]["draining"], false);
    ctl(&app, &["match", "anything at all"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_exits_2_a_precondition_1_a_missing_server_3() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let learn = [
        "learn",
        "a query long enough",
        "--category",
        "c",
        "--confidence",
        "0.5",
    ];
    ctl(&app, &learn)
        .await
        .fails(USAGE, &["INVALID_ARGUMENT", "(field confidence"]);
    // --json: the error is one JSON object, the detail decoded.
    let run = ctl(&app, &[&learn[..], &["--json"]].concat()).await;
    let err: Value = serde_json::from_str(run.fails(USAGE, &[])).expect("a JSON error");
    assert_eq!(err["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(err["error"]["exit_code"], USAGE);
    assert_eq!(
        err["error"]["details"][0]["field_violations"][0]["field"],
        "confidence"
    );
    // A generation this replica does not serve yet: refused (precondition), not bad input.
    ctl(&app, &["match", "anything", "--min-generation", "999"])
        .await
        .fails(REFUSED, &["FAILED_PRECONDITION"]);
    let long = "x".repeat(5000);
    ctl(&app, &["match", &long])
        .await
        .fails(USAGE, &["INVALID_ARGUMENT", "field query"]);
    // Refused before asking: a bad --metadata, a bad command line (clap's usage error).
    ctl(
        &app,
        &[
            "learn",
            "abc def",
            "--category",
            "c",
            "--confidence",
            "1",
            "--metadata",
            "[1]",
        ],
    )
    .await
    .fails(USAGE, &["--metadata", "JSON object"]);
    let usage = ctl(&app, &["reload", "--wait-for-fleet", "1s"]).await;
    assert_eq!(usage.code, Some(USAGE), "{usage:?}");
    assert!(usage.stderr.contains("--broadcast"), "{usage:?}");

    // The client TLS variables are read (TLS is then on, and its files are this side's input).
    ctl_env(
        &app,
        &["status"],
        &[("HOTPLANE_CLIENT_TLS_CA", "/nonexistent/ca.pem")],
    )
    .await
    .fails(USAGE, &["--tls-ca", "/nonexistent/ca.pem"]);
    let usage = ctl_env(&app, &["status"], &[("HOTPLANE_CLIENT_TLS_CERT", "c.pem")]).await;
    assert_eq!(
        usage.code,
        Some(USAGE),
        "a certificate without its key: {usage:?}"
    );

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = command(&format!("127.0.0.1:{port}"), &["status"], &[])
        .output()
        .await
        .expect("runs");
    Run::from(out).fails(UNAVAILABLE, &["cannot connect", &port.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_exits_4_the_variable_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path(), serde_json::json!({}));
    let app =
        TestApp::spawn_with(Backend::Sqlite, |c| c.auth.auth_tokens_file = Some(tokens)).await;
    ctl(&app, &["status"])
        .await
        .fails(AUTH, &["UNAUTHENTICATED"]);
    ctl(&app, &["status", "--token", "not-a-token"])
        .await
        .fails(AUTH, &["UNAUTHENTICATED"]);
    ctl(&app, &["status", "--token", READ_TOKEN]).await.ok();
    ctl_env(&app, &["reload"], &[("HOTPLANE_TOKEN", READ_TOKEN)])
        .await
        .fails(AUTH, &["PERMISSION_DENIED"]);
    ctl_env(&app, &["reload"], &[("HOTPLANE_TOKEN", ADMIN_TOKEN)])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_list_get_approve_disable_delete() {
    let app = TestApp::spawn_with(Backend::Postgres, |c| c.learn_auto_approve = false).await;
    let learned = ctl(
        &app,
        &[
            "learn",
            "turn the lights on",
            "--category",
            "home",
            "--confidence",
            "0.97",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(
        learned["served"], false,
        "pending until approved: {learned}"
    );
    let id = learned["pattern"]["id"]
        .as_i64()
        .expect("an id")
        .to_string();

    let pending = ctl(&app, &["patterns", "list", "--status", "pending", "--json"])
        .await
        .json();
    assert_eq!(pending["patterns"][0]["id"].to_string(), id, "{pending}");
    let table = ctl(&app, &["patterns", "list"]).await;
    assert!(table.ok().contains("turn the lights on"), "{table:?}");

    ctl(
        &app,
        &["patterns", "approve", &id, "--reason", "looks right"],
    )
    .await
    .ok();
    let row = ctl(&app, &["patterns", "get", &id, "--json"]).await.json();
    assert_eq!(row["pattern"]["status"], "PATTERN_STATUS_APPROVED");
    assert_eq!(row["served"], true);
    assert_eq!(
        ctl(&app, &["patterns", "list", "--status", "pending", "--json"])
            .await
            .json()["patterns"],
        serde_json::json!([])
    );

    ctl(&app, &["patterns", "disable", &id]).await.ok();
    let row = ctl(&app, &["patterns", "get", &id, "--json"]).await.json();
    assert_eq!(row["pattern"]["status"], "PATTERN_STATUS_DISABLED");
    assert_eq!(row["served"], false);

    let deleted = ctl(&app, &["patterns", "delete", &id]).await;
    assert!(
        deleted.ok().starts_with(&format!("pattern {id} deleted")),
        "{deleted:?}"
    );
    ctl(&app, &["patterns", "get", &id])
        .await
        .fails(REFUSED, &["NOT_FOUND", &id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_shows_the_rows() {
    let app = TestApp::spawn(Backend::Postgres).await;
    ctl(&app, &["reload", "--full", "--reason", "ctl audit check"])
        .await
        .ok();
    ctl(&app, &["drain", "start", "--reason", "ctl drain check"])
        .await
        .ok();
    // Rows are written asynchronously: wait for them, then check both forms.
    let rows = eventually("the audit rows", || async {
        let rows = ctl(&app, &["audit", "--json"]).await.json()["entries"].clone();
        let has = |reason: &str| {
            rows.as_array()
                .is_some_and(|r| r.iter().any(|e| e["reason"] == reason))
        };
        (has("ctl audit check") && has("ctl drain check")).then_some(rows)
    })
    .await;
    // Newest first.
    assert_eq!(rows[0]["action"], "drain_start", "{rows}");
    assert_eq!(rows[1]["action"], "reload");
    let only = ctl(&app, &["audit", "--action", "reload", "--json"])
        .await
        .json();
    let actions: Vec<&Value> = only["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["action"])
        .collect();
    assert!(
        !actions.is_empty() && actions.iter().all(|a| *a == "reload"),
        "{only}"
    );
    let text = ctl(&app, &["audit", "--since", "1h"]).await;
    let line = text
        .ok()
        .lines()
        .find(|l| l.contains("ctl drain check"))
        .unwrap_or_else(|| panic!("{text:?}"))
        .to_owned();
    assert!(
        line.contains("drain_start") && line.contains(" ok "),
        "{line}"
    );
}

/// A running `ctl watch` and its output, line by line.
struct Watch {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Watch {
    fn start(addr: &str, args: &[&str]) -> Watch {
        let mut child = command(addr, &[&["watch"], args].concat(), &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctl watch starts");
        let stdout = child.stdout.take().expect("stdout");
        Watch {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("a line before the deadline")
            .expect("stdout readable")
            .expect("watch still running")
    }

    /// Reads JSON events until one for which `done` holds, within the deadline (heartbeats
    /// keep lines coming, so each line's deadline alone would not end a wait that fails);
    /// returns every event read.
    async fn until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let read = async {
            loop {
                let line = self.line().await;
                let event: Value = serde_json::from_str(&line).expect("one JSON object per line");
                let stop = done(&event);
                seen.push(event);
                if stop {
                    return;
                }
            }
        };
        if tokio::time::timeout(DEADLINE, read).await.is_err() {
            panic!("no such event before the deadline; read: {seen:?}");
        }
        seen
    }

    /// Ctrl-C; the exit code.
    async fn interrupt(mut self) -> Option<i32> {
        let pid = self.child.id().expect("running");
        send_signal(pid, rustix::process::Signal::INT);
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("watch ends on SIGINT")
            .expect("exit status")
            .code()
    }
}

fn learned(id: i64) -> impl Fn(&Value) -> bool {
    move |e| e["kind"] == "EVENT_KIND_PATTERN_LEARNED" && e["pattern_id"] == id
}

async fn learn_on(app: &mut TestApp, text: &str) -> i64 {
    app.patterns
        .learn_pattern(learn_req(text, "cat", 0.95))
        .await
        .expect("learn")
        .into_inner()
        .pattern
        .expect("row")
        .id
}

/// Events of one server, then, after it stops and another starts on the same address and
/// database, a fresh snapshot from the new instance and its events: the stream survives the
/// restart, and Ctrl-C ends it with exit 0.
///
/// The watch is paused (SIGSTOP) across the restart while the new server numbers more events
/// than the old one did, so resuming after the last id seen would be served from the new
/// server's replay buffer: events of another numbering, a silent gap, no snapshot. Only a
/// watch that notices the new instance asks for the snapshot this test waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_events_survives_a_restart_and_ends_on_ctrl_c() {
    use rustix::process::Signal;
    let mut first = TestApp::spawn(Backend::Sqlite).await;
    let addr = first.addr;
    let mut watch = Watch::start(&addr.to_string(), &["--json"]);
    let snapshot = watch.until(|e| e["kind"] == "EVENT_KIND_SNAPSHOT").await;
    let first_instance = snapshot[0]["status"]["instance_id"].clone();
    let id = learn_on(&mut first, "before the restart").await;
    let seen = watch.until(learned(id)).await;
    let last_seen = seen.last().expect("an event")["event_id"]
        .as_u64()
        .expect("an id");

    let pid = watch.child.id().expect("running");
    send_signal(pid, Signal::STOP);
    let db = first.db.clone();
    first.stop().await.expect("the first server stops cleanly");
    let mut config = Config::for_database(db.url());
    config.listen = addr;
    let mut second = TestApp::start(config, db).await;
    second.wait_ready().await;
    for n in 0..3 {
        learn_on(&mut second, &format!("while the watch was paused {n}")).await;
    }
    // A snapshot carries the id of the last event numbered.
    let now = second
        .reload
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect("watch")
        .into_inner()
        .message()
        .await
        .expect("a snapshot")
        .expect("open")
        .event_id;
    assert!(
        now > last_seen + 1,
        "the new server numbered more events: {now} vs {last_seen}"
    );
    send_signal(pid, Signal::CONT);

    let events = watch
        .until(|e| {
            e["kind"] == "EVENT_KIND_SNAPSHOT" && e["status"]["instance_id"] != first_instance
        })
        .await;
    assert!(
        events
            .iter()
            .all(|e| e["kind"] != "EVENT_KIND_PATTERN_LEARNED"),
        "nothing replayed from the new server's numbering: {events:?}"
    );
    let id = learn_on(&mut second, "after the restart").await;
    watch.until(learned(id)).await;
    assert_eq!(watch.interrupt().await, Some(OK));
}

/// Without --json: one readable line per event; Ctrl-C ends it with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lines_for_people_and_ctrl_c_exits_0() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.watch_heartbeat = Duration::from_secs(3600);
    })
    .await;
    let mut watch = Watch::start(&app.addr.to_string(), &[]);
    let first = watch.line().await;
    assert!(first.contains(" snapshot instance "), "{first}");
    app.drain
        .start_drain(pb::StartDrainRequest {
            reason: "watch me".into(),
            ..Default::default()
        })
        .await
        .expect("drain");
    let line = loop {
        let line = watch.line().await;
        if line.contains("drain_changed") {
            break line;
        }
    };
    assert!(
        line.contains("draining since") && line.contains("\"watch me\""),
        "{line}"
    );
    assert_eq!(watch.interrupt().await, Some(OK));
}

//! Memory a read caller can force is bounded: rows with large metadata (written by any client
//! of the database) are quarantined past `--max-served-metadata-bytes`, and a match answer is
//! refused past `--max-response-bytes` before it is built, so 1,000 copies of one query over a
//! row with 4 MiB of metadata get a clear error instead of gigabytes of copies.

use std::time::Duration;

use hotplane::pb::{self, hot_reload_client::HotReloadClient, patterns_client::PatternsClient};
use prost_types::value::Kind;
use tonic::Code;

use crate::{
    both_backends,
    helpers::{Backend, TestApp, learn_req, match_req, patterns_status, reload_req, served, sql},
};

const MIB: usize = 1024 * 1024;

/// SQL inserting (or, with `update`, rewriting) an approved row `id` keyed `norm` whose metadata
/// is `{"blob": "xxx…"}` with `bytes` x's, as another service would write it.
fn big_row_sql(backend: Backend, id: i64, norm: &str, bytes: usize, update: bool) -> String {
    let meta = match backend {
        Backend::Postgres => format!("json_build_object('blob', repeat('x', {bytes}))::jsonb"),
        // zeroblob(n) is n zero bytes: its hex is 2n '0's.
        Backend::Sqlite => format!(
            "json_object('blob', replace(hex(zeroblob({})), '0', 'x'))",
            bytes / 2
        ),
    };
    if update {
        format!("UPDATE auto_learned_patterns SET metadata = {meta} WHERE id = {id}")
    } else {
        format!(
            "INSERT INTO auto_learned_patterns (id, pattern, normalized_pattern, category, \
                 confidence, status, enabled, metadata) \
             VALUES ({id}, '{norm}', '{norm}', 'big', 0.95, 'approved', true, {meta})"
        )
    }
}

async fn batch(
    patterns: &mut PatternsClient<tonic::transport::Channel>,
    query: &str,
    copies: usize,
) -> Result<pb::BatchMatchPatternsResponse, tonic::Status> {
    patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: vec![query.to_owned(); copies],
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The refusal names the size, the limit and its flag, and what to do; it is not retryable.
fn assert_too_large(e: &tonic::Status, limit: usize) {
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let m = e.message();
    assert!(
        m.contains(&format!("limit of {limit} bytes"))
            && m.contains("--max-response-bytes")
            && m.contains("the answer would be at least"),
        "{m}"
    );
}

/// A row with 4 MiB of metadata (accepted by the store: LearnPattern's 16 KiB limit is for
/// LearnPattern) is served once the served limit allows it; 1,000 copies of its query are
/// refused with the clear error, a batch that fits is answered in full and in order, and the
/// server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_copies_of_a_large_row_is_refused_and_the_server_keeps_serving() {
    let mut app = TestApp::spawn_with(Backend::Postgres, |cfg| {
        cfg.max_served_metadata_bytes = 8 * MIB;
        cfg.max_response_bytes = 16 * MIB;
    })
    .await;
    app.wait_ready().await;
    // Answers of several MiB: past tonic's 4 MiB default receive limit.
    app.patterns = app.patterns.clone().max_decoding_message_size(64 * MIB);
    app.patterns
        .learn_pattern(learn_req("workflow attivi", "workflow", 0.95))
        .await
        .expect("learn");
    sql(
        &app.db,
        &[&big_row_sql(
            Backend::Postgres,
            1000,
            "metadata enorme",
            4 * MIB,
            false,
        )],
    )
    .await;
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("reload");

    let one = served(&mut app, "Metadata ENORME")
        .await
        .expect("the 4 MiB row is served under an 8 MiB served limit");
    let blob = &one.metadata.expect("metadata").fields["blob"];
    assert!(
        matches!(&blob.kind, Some(Kind::StringValue(s)) if s.len() == 4 * MIB),
        "the whole 4 MiB blob is answered"
    );

    let e = batch(&mut app.patterns, "metadata enorme", 1000)
        .await
        .expect_err("1,000 copies of 4 MiB are over 16 MiB");
    assert_too_large(&e, 16 * MIB);
    assert!(
        e.message().contains("of the 1000 queries"),
        "{}",
        e.message()
    );

    // Three copies (12 MiB) fit: one answer per query, in order, with the unmatched one.
    let queries = [
        "metadata enorme",
        "niente",
        "Metadata enorme!",
        "metadata enorme",
    ];
    let r = app
        .patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: queries.iter().map(|q| (*q).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .expect("12 MiB fit under 16 MiB")
        .into_inner();
    let ids: Vec<_> = r
        .results
        .iter()
        .map(|m| m.pattern.as_ref().map(|p| p.id))
        .collect();
    assert_eq!(ids, [Some(1000), None, Some(1000), Some(1000)]);
    assert_eq!(r.results[1].normalized_query, "niente");

    let still = served(&mut app, "Workflow attivi")
        .await
        .expect("the server keeps serving after the refusal");
    assert_eq!(still.category, "workflow");
}

/// One match whose row alone is over the response limit gets the same clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_match_larger_than_the_response_limit_is_refused() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |cfg| {
        cfg.max_served_metadata_bytes = 2 * MIB;
        cfg.max_response_bytes = MIB;
    })
    .await;
    app.wait_ready().await;
    sql(
        &app.db,
        &[&big_row_sql(
            Backend::Sqlite,
            7,
            "grande",
            3 * MIB / 2,
            false,
        )],
    )
    .await;
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("reload");
    let e = app
        .patterns
        .match_pattern(match_req("grande"))
        .await
        .expect_err("1.5 MiB of metadata is over a 1 MiB answer");
    assert_too_large(&e, MIB);
    assert!(
        e.message().contains("metadata is larger"),
        "{}",
        e.message()
    );
    let r = app
        .patterns
        .match_pattern(match_req("altro"))
        .await
        .expect("other queries are answered");
    assert!(!r.into_inner().matched);
}

/// A row whose metadata is over the served limit is quarantined by full loads and deltas
/// (named in GetStatus with its size and the limit's flag), the rest keeps serving, and it is
/// served again once shrunk.
async fn metadata_over_the_served_limit_is_quarantined_until_shrunk(backend: Backend) {
    let limit = 64 * 1024;
    let mut app = TestApp::spawn_with(backend, |cfg| cfg.max_served_metadata_bytes = limit).await;
    app.wait_ready().await;
    app.patterns
        .learn_pattern(learn_req("workflow attivi", "workflow", 0.95))
        .await
        .expect("learn");
    sql(
        &app.db,
        &[&big_row_sql(backend, 500, "troppo grande", 100_000, false)],
    )
    .await;
    let reason = |t: &pb::TargetStatus| {
        t.quarantined
            .iter()
            .find(|q| q.pattern_id == 500)
            .map(|q| q.reason.clone())
    };
    for full in [true, false] {
        app.reload
            .reload(reload_req(full, None))
            .await
            .expect("the load succeeds, leaving the row out");
        assert!(
            served(&mut app, "troppo grande").await.is_none(),
            "full: {full}"
        );
        let t = patterns_status(&app).await;
        let why = reason(&t).expect("quarantined and named");
        assert!(
            why.contains("over the served limit of 65536 bytes")
                && why.contains("--max-served-metadata-bytes"),
            "{why}"
        );
        assert!(t.last_error.is_empty(), "{t:?}");
        assert!(served(&mut app, "workflow attivi").await.is_some());
        // Grown further by its writer: a delta reads it and keeps it out.
        sql(&app.db, &[&big_row_sql(backend, 500, "", 200_000, true)]).await;
    }
    sql(&app.db, &[&big_row_sql(backend, 500, "", 1_000, true)]).await;
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("reload");
    let back = served(&mut app, "troppo grande")
        .await
        .expect("served again once shrunk");
    assert_eq!(back.id, 500);
    assert_eq!(reason(&patterns_status(&app).await), None);
    // A served row that grows past the limit is taken out by the delta that reads it.
    sql(&app.db, &[&big_row_sql(backend, 500, "", 70_000, true)]).await;
    app.reload
        .reload(reload_req(false, None))
        .await
        .expect("reload");
    assert!(served(&mut app, "troppo grande").await.is_none());
    assert!(reason(&patterns_status(&app).await).is_some());
}

both_backends!(metadata_over_the_served_limit_is_quarantined_until_shrunk);

/// Peak resident memory of `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    field_kib(&status, "VmHWM:") * 1024
}

/// A `/proc/<pid>/status` field given in kB.
fn field_kib(status: &str, name: &str) -> usize {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

/// The real binary, response limit 8 MiB (one copy fits): 1,000 copies of a query over a row with
/// 4 MiB of metadata are refused, and the process's peak RSS grows by less than 64 MiB
/// (building the answer would take over 4 GB; the process's address space is capped at 1 GiB
/// over its size at start, so a server that tries fails fast instead of exhausting the machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_batch_of_large_copies_with_bounded_peak_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("hotplane.db");
    let url = format!("sqlite://{}", db.display());
    let (child, addr) = crate::binary::start_with_env(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--database-url", &url],
        &[
            ("HOTPLANE_MAX_SERVED_METADATA_BYTES", (8 * MIB).to_string()),
            ("HOTPLANE_MAX_RESPONSE_BYTES", (8 * MIB).to_string()),
            // Fewer malloc arenas: a steadier address-space size to cap.
            ("MALLOC_ARENA_MAX", "2".to_owned()),
        ],
    )
    .await;
    let pid = child.id().expect("pid");
    let channel = crate::binary::connect_serving(&addr).await;
    let vm_size = field_kib(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status"),
        "VmSize:",
    ) * 1024;
    let cap = (vm_size + 1024 * MIB) as u64;
    rustix::process::prlimit(
        rustix::process::Pid::from_raw(pid as i32),
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(cap),
            maximum: Some(cap),
        },
    )
    .expect("cap the server's address space");

    // Another writer of the same SQLite file.
    let writer = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("SQLite client connects");
    let insert = big_row_sql(Backend::Sqlite, 1, "metadata enorme", 4 * MIB, false);
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .execute(&writer)
        .await
        .expect("insert");
    writer.close().await;
    HotReloadClient::new(channel.clone())
        .reload(reload_req(false, None))
        .await
        .expect("reload");
    let mut patterns = PatternsClient::new(channel)
        .max_decoding_message_size(64 * MIB)
        .max_encoding_message_size(64 * MIB);
    // Warm up the paths a refused batch takes (one match of the row), then measure.
    batch(&mut patterns, "metadata enorme", 1)
        .await
        .expect("one copy fits");
    let before = peak_rss(pid);
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        batch(&mut patterns, "metadata enorme", 1000),
    )
    .await
    .expect("answered")
    .expect_err("4 GB of copies are refused");
    assert_too_large(&e, 8 * MIB);
    let grown = peak_rss(pid).saturating_sub(before);
    assert!(grown < 64 * MIB, "peak RSS grew by {} MiB", grown / MIB);
    batch(&mut patterns, "metadata enorme", 1)
        .await
        .expect("still serving");
    drop(child);
}

//! WatchStatus: snapshot first, numbered events, resume and resync, filters, heartbeats, stream
//! age, slow consumers, and producers that end when their client goes away.

use std::time::Duration;

use hotplane::pb::{self, EventKind, WatchStatusResponse, drain_client::DrainClient};
use tonic::{Streaming, transport::Channel};

use crate::helpers::{Backend, DEADLINE, TestApp, eventually, learn_req};

async fn spawn(tweak: impl FnOnce(&mut hotplane::config::Config)) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |c| {
        c.watch_heartbeat = Duration::from_secs(3600);
        tweak(c)
    })
    .await
}

async fn watch(app: &TestApp, req: pb::WatchStatusRequest) -> Streaming<WatchStatusResponse> {
    app.reload
        .clone()
        .watch_status(req)
        .await
        .expect("watch")
        .into_inner()
}

async fn next(stream: &mut Streaming<WatchStatusResponse>) -> WatchStatusResponse {
    tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("an event before the deadline")
        .expect("stream ok")
        .expect("stream open")
}

/// Reads until an event of `kind`, returning everything read.
async fn until(
    stream: &mut Streaming<WatchStatusResponse>,
    kind: EventKind,
) -> Vec<WatchStatusResponse> {
    let mut seen = Vec::new();
    loop {
        let e = next(stream).await;
        let done = e.kind == kind as i32;
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn kinds(events: &[WatchStatusResponse]) -> Vec<i32> {
    events.iter().map(|e| e.kind).collect()
}

async fn learn(app: &mut TestApp, text: &str) -> i64 {
    app.patterns
        .learn_pattern(learn_req(text, "cat", 0.95))
        .await
        .expect("learn")
        .into_inner()
        .pattern
        .expect("row")
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_numbered_events_resume_resync_and_filters() {
    let mut app = spawn(|c| c.event_capacity = 16).await;
    let mut stream = watch(&app, Default::default()).await;
    let first = next(&mut stream).await;
    assert_eq!(first.kind, EventKind::Snapshot as i32);
    assert!(!first.resync);
    let status = first.status.expect("full status");
    assert_eq!(
        status.targets[0].current.as_ref().expect("gen").generation,
        1
    );

    let mut learned_only = watch(
        &app,
        pb::WatchStatusRequest {
            kinds: vec![EventKind::PatternLearned.into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        next(&mut learned_only).await.kind,
        EventKind::Snapshot as i32,
        "snapshot always comes first"
    );

    let id = learn(&mut app, "guarda questo").await;
    let events = until(&mut stream, EventKind::PatternLearned).await;
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::ReloadStarted as i32,
            EventKind::ReloadSucceeded as i32,
            EventKind::PatternLearned as i32
        ]
    );
    assert!(
        events
            .windows(2)
            .all(|w| w[1].event_id == w[0].event_id + 1),
        "ids increase by one"
    );
    assert_eq!(
        events[1]
            .generation
            .as_ref()
            .expect("generation")
            .generation,
        2
    );
    assert_eq!(events[2].pattern_id, id);
    let only = next(&mut learned_only).await;
    assert_eq!(
        (only.kind, only.pattern_id),
        (EventKind::PatternLearned as i32, id),
        "filtered"
    );

    // Resuming after the RELOAD_STARTED replays exactly what followed it.
    let mut resumed = watch(
        &app,
        pb::WatchStatusRequest {
            after_event_id: events[0].event_id,
            ..Default::default()
        },
    )
    .await;
    let replay = [next(&mut resumed).await, next(&mut resumed).await];
    assert_eq!(
        replay.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![events[1].event_id, events[2].event_id]
    );

    // Twenty more events push that id out of the 16-event buffer: resuming from it resyncs.
    for i in 0..7 {
        learn(&mut app, &format!("altro pattern {i}")).await;
    }
    let mut stale = watch(
        &app,
        pb::WatchStatusRequest {
            after_event_id: events[0].event_id,
            ..Default::default()
        },
    )
    .await;
    let resync = next(&mut stale).await;
    assert_eq!(resync.kind, EventKind::Snapshot as i32);
    assert!(resync.resync && resync.status.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_a_clean_end_at_the_maximum_age() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.watch_heartbeat = Duration::from_millis(50);
        c.watch_max_age = Duration::from_millis(500);
    })
    .await;
    let mut stream = watch(&app, Default::default()).await;
    assert_eq!(next(&mut stream).await.kind, EventKind::Snapshot as i32);
    let beat = next(&mut stream).await;
    assert_eq!(beat.kind, EventKind::Heartbeat as i32);
    let current = beat.status.expect("status").targets[0]
        .current
        .clone()
        .expect("gen");
    assert_eq!(
        current.generation, 1,
        "heartbeats carry current generations"
    );
    // At the maximum age the stream ends with OK (no error), so clients simply reconnect.
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(e) => panic!("stream failed instead of ending cleanly: {e:?}"),
            }
        }
    })
    .await
    .expect("ended before the deadline");
    assert!(ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_going_away_ends_its_producer() {
    let app = spawn(|_| {}).await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let drain = DrainClient::new(channel);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = watch(&app, Default::default()).await;
        next(&mut s).await;
        streams.push(s);
    }
    let open = |n: u32| {
        let drain = drain.clone();
        move || {
            let mut drain = drain.clone();
            async move {
                let s = drain
                    .get_drain_status(pb::GetDrainStatusRequest {})
                    .await
                    .ok()?;
                (s.into_inner().status?.open_streams == n).then_some(())
            }
        }
    };
    eventually("3 open streams", open(3)).await;
    drop(streams);
    eventually("0 open streams after the clients left", open(0)).await;
}

/// A client that stops reading never slows the engine or other streams: its producer waits
/// alone (and, once the broadcast moves past it, resyncs — see `events` unit tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stream_slows_nobody() {
    // 500 reloads in a row on purpose: the per-caller rate limit is off (tested in auth.rs).
    let app = spawn(|c| {
        c.event_capacity = 16;
        c.auth.admin_rate = 0.0;
    })
    .await;
    let mut slow = watch(&app, Default::default()).await;
    let mut fast = watch(&app, Default::default()).await;
    next(&mut slow).await;
    next(&mut fast).await;
    // Cheap events: every no-op reload announces a start and a success.
    const RELOADS: usize = 500;
    let reader = tokio::spawn(async move {
        let mut done = 0;
        while done < RELOADS {
            let e = next(&mut fast).await;
            assert!(!e.resync, "a reading stream never needs a resync");
            if e.kind == EventKind::ReloadSucceeded as i32 {
                done += 1;
            }
        }
    });
    let mut reload = app.reload.clone();
    for _ in 0..RELOADS {
        reload
            .reload(crate::helpers::reload_req(false, None))
            .await
            .expect("the engine is never slowed down by a stream");
    }
    reader.await.expect("the fast stream saw every event");
    // The unread stream is still open and readable.
    assert_eq!(next(&mut slow).await.kind, EventKind::ReloadStarted as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_changes_and_shutdown_are_announced() {
    let app = spawn(|_| {}).await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut drain = DrainClient::new(channel);
    let mut stream = watch(&app, Default::default()).await;
    next(&mut stream).await;
    drain
        .start_drain(pb::StartDrainRequest {
            reason: "watch me".into(),
            ..Default::default()
        })
        .await
        .expect("drain");
    let e = until(&mut stream, EventKind::DrainChanged)
        .await
        .pop()
        .expect("event");
    let d = e.status.expect("status").drain.expect("drain");
    assert!(d.draining && d.reason == "watch me");
    drain
        .stop_drain(pb::StopDrainRequest {})
        .await
        .expect("stop");
    let e = until(&mut stream, EventKind::DrainChanged)
        .await
        .pop()
        .expect("event");
    assert!(!e.status.expect("status").drain.expect("drain").draining);

    // Shutdown: the drain is announced, a final status event is sent, then the stream ends
    // cleanly (OK, not an error).
    let stopping = tokio::spawn(app.stop());
    let mut last = None;
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.message().await {
                Ok(Some(e)) => last = Some(e),
                Ok(None) => return,
                Err(e) => panic!("stream failed instead of ending cleanly: {e:?}"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended before the deadline");
    let last = last.expect("a final event");
    assert_eq!(last.kind, EventKind::DrainChanged as i32);
    assert!(last.status.expect("status").drain.expect("drain").draining);
    stopping.await.expect("join").expect("clean stop");
}

/// A client that stops reading cannot keep its stream's producer (and its per-caller slot)
/// past `--watch-max-age`. The client's HTTP/2 stream window is 1 KiB, so heartbeats every
/// 10 ms fill the server's buffers for that stream within about a second and its producer waits
/// in a send; the maximum age must end it there too. With one stream allowed per caller, a new
/// stream is accepted only once the old producer has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stream_still_ends_at_its_maximum_age() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.watch_heartbeat = Duration::from_millis(10);
        c.watch_max_age = Duration::from_secs(3);
        c.watch_max_streams_per_caller = 1;
    })
    .await;
    let narrow = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .initial_stream_window_size(Some(1024))
        .connect()
        .await
        .expect("connect");
    let mut unread = pb::hot_reload_client::HotReloadClient::new(narrow)
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next(&mut unread).await.kind, EventKind::Snapshot as i32);
    let err = app
        .reload
        .clone()
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect_err("one stream per caller");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    // `unread` is never read again, but stays open while its producer must end.
    eventually(
        "a new stream once the unread one reached its maximum age",
        || {
            let mut reload = app.reload.clone();
            async move {
                let mut s = reload
                    .watch_status(pb::WatchStatusRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                s.message().await.ok().flatten()
            }
        },
    )
    .await;
    drop(unread);
}

/// Heartbeats (and resync snapshots) carry the id of the last event this stream passed, never
/// the id of one still on its way to it: an event's id is always above every id the stream
/// sent before it. Otherwise a client resuming from the highest id seen (the proto's advice)
/// skips that event, and one dropping repeated ids (the dashboard page, `hotplane ctl watch`)
/// hides it. The client reads through a 1 KiB HTTP/2 window and stops reading while reloads
/// pile up, so the producer, once unblocked, has a heartbeat due and events queued at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_never_carry_an_id_ahead_of_the_events_they_precede() {
    // Reloads in a row on purpose: the per-caller rate limit is off (tested in auth.rs).
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.watch_heartbeat = Duration::from_millis(10);
        c.auth.admin_rate = 0.0;
    })
    .await;
    let narrow = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .initial_stream_window_size(Some(1024))
        .connect()
        .await
        .expect("connect");
    let mut stream = pb::hot_reload_client::HotReloadClient::new(narrow)
        .watch_status(pb::WatchStatusRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!(first.kind, EventKind::Snapshot as i32);
    let mut highest = first.event_id;
    let (mut heartbeats, mut events) = (0, 0);
    let mut reload = app.reload.clone();
    const ROUNDS: usize = 4;
    const RELOADS: usize = 50;
    for _ in 0..ROUNDS {
        for _ in 0..RELOADS {
            reload
                .reload(crate::helpers::reload_req(false, None))
                .await
                .expect("reload");
        }
        // Every no-op reload announces a start and a success: read up to this round's last.
        let mut succeeded = 0;
        while succeeded < RELOADS {
            let e = next(&mut stream).await;
            let kind = e.kind();
            if kind == EventKind::Heartbeat || kind == EventKind::Snapshot {
                heartbeats += usize::from(kind == EventKind::Heartbeat);
            } else {
                assert!(
                    e.event_id > highest,
                    "event {} ({kind:?}) arrived after a message that carried id {highest}",
                    e.event_id
                );
                events += 1;
                succeeded += usize::from(kind == EventKind::ReloadSucceeded);
            }
            highest = highest.max(e.event_id);
        }
    }
    assert_eq!(events, ROUNDS * RELOADS * 2, "every event once");
    assert!(heartbeats > 0, "heartbeats were interleaved");
}

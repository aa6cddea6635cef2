//! Content-hash schemes: hashes are compared like with like. A member that reports another
//! scheme (a newer version), or none (a version from before schemes were numbered, which may
//! hash with scheme 1 or 2), cannot be told apart by its hash: it is judged by its store
//! revision instead, and says so. A rollback naming a hash of another scheme is refused rather
//! than searched for among generations hashed differently.

use std::sync::Arc;

use hotplane::pb;
use tokio_stream::StreamExt;

use super::{
    bus_config, bus_status, channel, publish, redis_url, register_member, start, status, wait_bus,
    wait_served,
};
use crate::{
    db::TestDb,
    helpers::{TestApp, eventually, learn_req, patterns_status},
};

/// This version's scheme (metadata hashed as the store's text).
const OURS: u32 = 2;

/// Registers a fake fleet member `id` beside the real ones, reporting `hash` at `revision`,
/// with `scheme` (left out of its record when `None`, as versions before schemes wrote it).
async fn register(ch: &str, id: &str, hash: &str, revision: i64, scheme: Option<u32>) {
    let mut record = serde_json::json!({
        "instance_id": id, "addr": "10.0.0.9:50051", "generation": 7,
        "content_hash": hash, "store_revision": revision, "item_count": 1,
        "draining": false, "updated_at_ms": 0,
    });
    if let Some(s) = scheme {
        record["content_hash_scheme"] = s.into();
    }
    register_member(ch, id, &record.to_string()).await;
}

/// The fleet as `app` sees it, once it lists `n` members.
async fn fleet_of(app: &TestApp, n: usize) -> pb::FleetStatus {
    eventually("every member listed", || async {
        let f = status(app).await.fleet.expect("fleet status with a bus");
        (f.members.len() == n).then_some(f)
    })
    .await
}

/// GetStatus reports the scheme of each hash. A member of another scheme, or of an unnumbered
/// one, at the same store revision counts as converged (its hash cannot say otherwise); a
/// member of our scheme whose hash differs does not, whatever its revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_hashing_with_another_scheme_are_judged_by_their_revision() {
    let db = Arc::new(TestDb::sqlite().await);
    let ch = channel("hotplane:hash-scheme");
    let mut config = bus_config(&db, &redis_url(), &ch);
    config.fleet_heartbeat = std::time::Duration::from_millis(100);
    let mut app = start(config, &db).await;
    app.patterns
        .learn_pattern(learn_req("schema del digest", "x", 0.95))
        .await
        .expect("learn");
    wait_served(&mut app, "schema del digest").await;
    let me = patterns_status(&app).await.current.expect("gen");
    assert_eq!(me.content_hash_scheme, OURS, "{me:?}");
    let rev = me.store_revision;

    register(&ch, "newer", "0123456789abcdef", rev, Some(OURS + 1)).await;
    register(&ch, "unnumbered", "fedcba9876543210", rev, None).await;
    register(&ch, "unnumbered-same", &me.content_hash, rev, None).await;
    let f = fleet_of(&app, 4).await;
    for m in &f.members {
        assert!(m.converged, "{m:?}");
    }
    assert!(f.converged, "{f:?}");
    let scheme_of = |id: &str| {
        f.members
            .iter()
            .find(|m| m.instance_id == id)
            .map(|m| m.content_hash_scheme)
    };
    assert_eq!(scheme_of("newer"), Some(OURS + 1));
    assert_eq!(scheme_of("unnumbered"), Some(0));
    let mine = status(&app).await.instance_id;
    assert_eq!(scheme_of(&mine), Some(OURS), "we report our own scheme");

    // Like with like: same scheme, different hash, same revision is a divergence.
    register(&ch, "diverged", "00000000000000aa", rev, Some(OURS)).await;
    let f = fleet_of(&app, 5).await;
    let diverged = f
        .members
        .iter()
        .find(|m| m.instance_id == "diverged")
        .expect("listed");
    assert!(!diverged.converged, "{diverged:?}");
    assert!(!f.converged, "{f:?}");
    // Another scheme at another revision has not converged either.
    register(&ch, "diverged", "00000000000000aa", rev + 1, Some(OURS + 1)).await;
    let f = eventually("the member's new record", || async {
        let f = status(&app).await.fleet.expect("fleet");
        f.members
            .iter()
            .any(|m| m.instance_id == "diverged" && m.content_hash_scheme == OURS + 1)
            .then_some(f)
    })
    .await;
    assert!(!f.converged, "{f:?}");
}

/// A broadcast rollback says which scheme its hash is in. One of another scheme is refused,
/// reported, and pins nothing, even when its hash happens to equal ours; one without a scheme
/// (an older publisher) is compared as before. Our own rollbacks carry our scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_hashed_with_another_scheme_is_refused_not_searched() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hash-scheme-rollback"));
    let mut config = bus_config(&db, &url, &ch);
    config.bus_allow_unsigned_rollback = true;
    let mut app = start(config, &db).await;
    let old = patterns_status(&app)
        .await
        .current
        .expect("gen")
        .content_hash;
    app.patterns
        .learn_pattern(learn_req("dopo il vecchio", "x", 0.95))
        .await
        .expect("learn");
    wait_served(&mut app, "dopo il vecchio").await;

    let foreign = OURS + 1;
    let msg = format!(
        r#"{{"action":"rollback","content_hash":"{old}","content_hash_scheme":{foreign}}}"#
    );
    publish(&url, &ch, msg).await;
    wait_bus(&app, "the rollback to be refused", |s| {
        s.rollbacks_failed == 1
    })
    .await;
    let st = bus_status(&app).await;
    assert_eq!(st.rollbacks_followed, 0);
    assert!(
        st.last_rollback_error
            .contains(&format!("scheme {foreign}")),
        "{}",
        st.last_rollback_error
    );
    let t = patterns_status(&app).await;
    assert!(!t.pinned, "{t:?}");
    assert_ne!(t.current.expect("gen").content_hash, old);

    // A rollback without a scheme, as older publishers send it, is followed as before.
    publish(
        &url,
        &ch,
        format!(r#"{{"action":"rollback","content_hash":"{old}"}}"#),
    )
    .await;
    wait_bus(&app, "the rollback to be followed", |s| {
        s.rollbacks_followed == 1
    })
    .await;
    let t = patterns_status(&app).await;
    assert!(t.pinned);
    assert_eq!(t.current.expect("gen").content_hash, old);
}

/// What this version publishes for a broadcast rollback names its scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_rollback_announcements_name_our_scheme() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:hash-scheme-announce"));
    let mut app = start(bus_config(&db, &url, &ch), &db).await;
    app.patterns
        .learn_pattern(learn_req("da annunciare", "x", 0.95))
        .await
        .expect("learn");
    wait_served(&mut app, "da annunciare").await;
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut sub = client.get_async_pubsub().await.expect("subscribes");
    sub.subscribe(&ch).await.expect("subscribe");
    app.reload
        .rollback(pb::RollbackRequest {
            target: pb::Target::Patterns.into(),
            broadcast: true,
            ..Default::default()
        })
        .await
        .expect("rollback");
    let mut messages = sub.on_message();
    let text = loop {
        let m = tokio::time::timeout(crate::helpers::DEADLINE, messages.next())
            .await
            .expect("a message before the deadline")
            .expect("stream open");
        let text: String = m.get_payload().expect("text");
        if text.contains("\"rollback\"") {
            break text;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["content_hash_scheme"], OURS, "{text}");
}

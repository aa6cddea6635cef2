//! Authentication and scopes against the real server: every RPC of the three services, without
//! credentials, with read and admin tokens, with good and bad JWTs; the loopback default; rate
//! limits. (TLS and mTLS: `tls.rs`.)
//!
//! `tokens_reload`: the tokens file re-read by a config reload.

mod tokens_reload;

use std::{net::SocketAddr, path::Path, time::Duration};

use hotplane::{
    auth::hash_token,
    config::Config,
    pb::{
        self, drain_client::DrainClient, hot_reload_client::HotReloadClient,
        patterns_client::PatternsClient,
    },
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tonic::{Code, Request, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

use crate::{
    db::TestDb,
    helpers::{Backend, TestApp, eventually, learn_req, match_req, reload_req},
};

/// What each RPC requires, as issue 5 specifies (the spec for `hotplane::auth::access`).
pub const RPCS: &[(&str, Need)] = &[
    ("MatchPattern", Need::Read),
    ("BatchMatchPatterns", Need::Read),
    ("GetPattern", Need::Read),
    ("ListPatterns", Need::Read),
    ("GetStatus", Need::Read),
    ("GetDrainStatus", Need::Read),
    ("WatchStatus", Need::Read),
    ("LearnPattern", Need::Admin),
    ("ApprovePattern", Need::Admin),
    ("DisablePattern", Need::Admin),
    ("DeletePattern", Need::Admin),
    ("Reload", Need::Admin),
    ("Rollback", Need::Admin),
    ("ListAudit", Need::Admin),
    ("StartDrain", Need::Admin),
    ("StopDrain", Need::Admin),
];

/// The scope an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Admin,
}

/// A request carrying `token` as a bearer token.
fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii token"),
        );
    }
    req
}

/// Calls one RPC by name with a plausible request; Ok or the error status. What matters here
/// is whether the auth layer let it through, not what the handler answered.
pub async fn call(channel: &Channel, token: Option<&str>, rpc: &str) -> Result<(), Status> {
    let mut p = PatternsClient::new(channel.clone());
    let mut h = HotReloadClient::new(channel.clone());
    let mut d = DrainClient::new(channel.clone());
    let t = token;
    match rpc {
        "MatchPattern" => p
            .match_pattern(with_token(match_req("hello there"), t))
            .await
            .map(drop),
        "BatchMatchPatterns" => p
            .batch_match_patterns(with_token(
                pb::BatchMatchPatternsRequest {
                    queries: vec!["hello there".into()],
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "GetPattern" => p
            .get_pattern(with_token(
                pb::GetPatternRequest {
                    id: 1,
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "ListPatterns" => p
            .list_patterns(with_token(pb::ListPatternsRequest::default(), t))
            .await
            .map(drop),
        "GetStatus" => h
            .get_status(with_token(pb::GetStatusRequest {}, t))
            .await
            .map(drop),
        "GetDrainStatus" => d
            .get_drain_status(with_token(pb::GetDrainStatusRequest {}, t))
            .await
            .map(drop),
        "WatchStatus" => h
            .watch_status(with_token(pb::WatchStatusRequest::default(), t))
            .await
            .map(drop),
        "LearnPattern" => p
            .learn_pattern(with_token(
                learn_req("quali sono i workflow attivi", "workflow", 0.95),
                t,
            ))
            .await
            .map(drop),
        "ApprovePattern" => p
            .approve_pattern(with_token(
                pb::ApprovePatternRequest {
                    id: 1,
                    reason: "test".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "DisablePattern" => p
            .disable_pattern(with_token(
                pb::DisablePatternRequest {
                    id: 1,
                    reason: "test".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "DeletePattern" => p
            .delete_pattern(with_token(
                pb::DeletePatternRequest {
                    id: 1,
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "Reload" => h
            .reload(with_token(reload_req(false, None), t))
            .await
            .map(drop),
        "Rollback" => h
            .rollback(with_token(
                pb::RollbackRequest {
                    target: pb::Target::Patterns.into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "StartDrain" => d
            .start_drain(with_token(
                pb::StartDrainRequest {
                    reason: "test".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "ListAudit" => h
            .list_audit(with_token(pb::ListAuditRequest::default(), t))
            .await
            .map(drop),
        "StopDrain" => d
            .stop_drain(with_token(pb::StopDrainRequest::default(), t))
            .await
            .map(drop),
        other => panic!("no such RPC in the table: {other}"),
    }
}

/// Whether the auth layer let the call through (the handler may still refuse it for its own
/// reasons: NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE while drained...).
pub fn passed(r: &Result<(), Status>) -> bool {
    !matches!(r, Err(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied | Code::ResourceExhausted))
}

/// Every RPC with `token`, checked against `expect(need)`: Ok(()) when it must pass, or the
/// code it must be refused with.
async fn every_rpc(channel: &Channel, token: Option<&str>, expect: impl Fn(Need) -> Option<Code>) {
    for (rpc, need) in RPCS {
        let r = call(channel, token, rpc).await;
        match expect(*need) {
            None => assert!(passed(&r), "{rpc} with {token:?} must pass auth: {r:?}"),
            Some(code) => {
                let err = r.expect_err(rpc);
                assert_eq!(err.code(), code, "{rpc} with {token:?}: {err:?}");
                assert!(
                    !err.message().contains(token.unwrap_or("\u{0}")),
                    "the token is echoed: {err:?}"
                );
            }
        }
    }
}

/// Health must stay open whatever the credentials (Kubernetes probes send none).
async fn health_is_open(channel: &Channel) {
    let r = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(r.is_ok(), "health without credentials: {r:?}");
}

/// Writes a tokens file: `reader` (read), `deployer` (admin), `other-deployer` (admin).
pub fn tokens_file(dir: &Path, extra: serde_json::Value) -> std::path::PathBuf {
    let path = dir.join("tokens.json");
    let mut file = json!({
        "tokens": [
            {"name": "reader", "sha256": hash_token(READ_TOKEN), "scopes": ["read"]},
            {"name": "deployer", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]},
            {"name": "other-deployer", "sha256": hash_token(OTHER_ADMIN_TOKEN), "scopes": ["read", "admin"]},
        ]
    });
    if let (Some(obj), Some(extra)) = (file.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    std::fs::write(&path, file.to_string()).expect("write tokens file");
    path
}

pub const READ_TOKEN: &str = "read-token-5f8a1c";
pub const ADMIN_TOKEN: &str = "admin-token-93be07";
pub const OTHER_ADMIN_TOKEN: &str = "admin-token-2-aa41d9";

async fn channel_to(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_every_rpc_without_with_read_with_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path(), json!({}));
    let app =
        TestApp::spawn_with(Backend::Sqlite, |c| c.auth.auth_tokens_file = Some(tokens)).await;
    let ch = channel_to(app.addr).await;
    health_is_open(&ch).await;
    // Loopback is no longer enough once credentials are configured.
    every_rpc(&ch, None, |_| Some(Code::Unauthenticated)).await;
    every_rpc(&ch, Some("not-a-configured-token"), |_| {
        Some(Code::Unauthenticated)
    })
    .await;
    every_rpc(&ch, Some(READ_TOKEN), |need| {
        (need == Need::Admin).then_some(Code::PermissionDenied)
    })
    .await;
    every_rpc(&ch, Some(ADMIN_TOKEN), |_| None).await;
    let denied = call(&ch, Some(READ_TOKEN), "Reload")
        .await
        .expect_err("reader reloads");
    assert!(
        denied.message().contains("admin") && denied.message().contains("reader"),
        "{denied:?}"
    );
    let missing = call(&ch, None, "GetStatus").await.expect_err("no token");
    assert!(missing.message().contains("Bearer"), "{missing:?}");
}

/// With no credentials configured, the tests (on 127.0.0.1) may do everything: this is the
/// default every other test module relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_default_allows_every_rpc_from_this_machine() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ch = channel_to(app.addr).await;
    every_rpc(&ch, None, |_| None).await;
}

/// A non-loopback address of this machine, if it has one (the address the kernel would send
/// from towards a documentation-range address; no packet is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The default refuses state changes from any other address. Served on this machine's
/// non-loopback address and called through it, the peer is not loopback. (The same decision
/// is unit-tested in `hotplane::auth` for machines without such an address.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_default_refuses_writes_from_other_addresses() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine; covered by the auth unit tests");
        return;
    };
    let db = TestDb::sqlite().await;
    let mut config = Config::for_database(db.url());
    config.listen = SocketAddr::new(ip, 0);
    let app = TestApp::start(config, db).await;
    app.wait_ready().await;
    let ch = channel_to(app.addr).await;
    every_rpc(&ch, None, |need| {
        (need == Need::Admin).then_some(Code::PermissionDenied)
    })
    .await;
    let err = call(&ch, None, "Reload").await.expect_err("remote reload");
    assert!(
        err.message().contains("--auth-tokens-file") && err.message().contains("loopback"),
        "{err:?}"
    );
    health_is_open(&ch).await;
}

const JWT_SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn jwt(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("encode jwt")
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "ci-pipeline", "aud": "hotplane", "iss": "https://issuer.test", "exp": now() + 600, "scope": "read admin"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_jwts_good_expired_wrong_audience_wrong_signature() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.auth_jwt_algorithm = Some(hotplane::auth::JwtAlgorithm::Hs256);
        c.auth.auth_jwt_secret = Some(hotplane::auth::JwtSecret::new(JWT_SECRET));
        c.auth.auth_jwt_audience = Some("hotplane".into());
        c.auth.auth_jwt_issuer = Some("https://issuer.test".into());
    })
    .await;
    let ch = channel_to(app.addr).await;
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let claims = |patch: serde_json::Value| {
        let mut c = good_claims();
        c.as_object_mut()
            .expect("object")
            .extend(patch.as_object().expect("object").clone());
        jwt(Algorithm::HS256, &key, c)
    };
    every_rpc(&ch, Some(&claims(json!({}))), |_| None).await;
    let reader = claims(json!({"scope": ["read"]}));
    every_rpc(&ch, Some(&reader), |need| {
        (need == Need::Admin).then_some(Code::PermissionDenied)
    })
    .await;
    let denied = call(&ch, Some(&reader), "Reload")
        .await
        .expect_err("reader");
    assert!(
        denied.message().contains("ci-pipeline"),
        "the caller is named: {denied:?}"
    );

    for (token, why) in [
        (claims(json!({"exp": now() - 3600})), "expired"),
        (claims(json!({"aud": "another-service"})), "wrong audience"),
        (claims(json!({"iss": "https://evil.test"})), "wrong issuer"),
        (claims(json!({"nbf": now() + 3600})), "not valid yet"),
        (
            jwt(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
                good_claims(),
            ),
            "bad signature",
        ),
        (
            jwt(
                Algorithm::HS384,
                &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
                good_claims(),
            ),
            "algorithm not accepted",
        ),
    ] {
        every_rpc(&ch, Some(&token), |_| Some(Code::Unauthenticated)).await;
        let err = call(&ch, Some(&token), "GetStatus").await.expect_err(why);
        assert!(err.message().contains(why), "{why}: {err:?}");
    }
    // A token without exp never expires: refused.
    let mut no_exp = good_claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    let err = call(&ch, Some(&jwt(Algorithm::HS256, &key, no_exp)), "GetStatus")
        .await
        .expect_err("no exp");
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// Makes a key pair with the openssl CLI: (private PEM, public PEM).
async fn key_pair(dir: &Path, kind: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let gen_args: Vec<&str> = match kind {
        "rsa" => vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        _ => vec![
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
    };
    crate::tls::openssl(
        dir,
        &[gen_args, vec!["-out", key.to_str().expect("utf-8")]].concat(),
    )
    .await;
    crate::tls::openssl(
        dir,
        &[
            "pkey",
            "-in",
            key.to_str().expect("utf-8"),
            "-pubout",
            "-out",
            public.to_str().expect("utf-8"),
        ],
    )
    .await;
    (
        std::fs::read(&key).expect("key"),
        std::fs::read(&public).expect("public key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_jwts_with_a_public_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (kind, alg, cfg_alg) in [
        ("rsa", Algorithm::RS256, hotplane::auth::JwtAlgorithm::Rs256),
        ("ec", Algorithm::ES256, hotplane::auth::JwtAlgorithm::Es256),
    ] {
        let (private, _) = key_pair(dir.path(), kind, kind).await;
        let public_path = dir.path().join(format!("{kind}.pub"));
        let (other_private, _) = key_pair(dir.path(), kind, &format!("{kind}-other")).await;
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.auth.auth_jwt_algorithm = Some(cfg_alg);
            c.auth.auth_jwt_key_file = Some(public_path.clone());
            c.auth.auth_jwt_audience = Some("hotplane".into());
            c.auth.auth_jwt_scope_claim = "roles".into();
        })
        .await;
        let ch = channel_to(app.addr).await;
        let key = match kind {
            "rsa" => EncodingKey::from_rsa_pem(&private),
            _ => EncodingKey::from_ec_pem(&private),
        }
        .expect("private key");
        let mut claims = good_claims();
        claims["roles"] = json!(["admin"]);
        every_rpc(&ch, Some(&jwt(alg, &key, claims.clone())), |_| None).await;
        // Signed by another key of the same kind.
        let other = match kind {
            "rsa" => EncodingKey::from_rsa_pem(&other_private),
            _ => EncodingKey::from_ec_pem(&other_private),
        }
        .expect("other key");
        every_rpc(&ch, Some(&jwt(alg, &other, claims.clone())), |_| {
            Some(Code::Unauthenticated)
        })
        .await;
        // An HS256 token "signed" with the public key must not pass (algorithm confusion).
        let confused = jwt(
            Algorithm::HS256,
            &EncodingKey::from_secret(&std::fs::read(&public_path).expect("pub")),
            claims.clone(),
        );
        every_rpc(&ch, Some(&confused), |_| Some(Code::Unauthenticated)).await;
        // The default `scope` claim is not read when another claim is configured.
        let mut wrong_claim = good_claims();
        wrong_claim["roles"] = json!([]);
        every_rpc(&ch, Some(&jwt(alg, &key, wrong_claim)), |_| {
            Some(Code::PermissionDenied)
        })
        .await;
        app.stop().await.expect("stops");
    }
}

fn limited(c: &mut Config, tokens: std::path::PathBuf, per_second: f64, burst: u32) {
    c.auth.auth_tokens_file = Some(tokens);
    c.auth.admin_rate = per_second;
    c.auth.admin_burst = burst;
}

/// A caller past its burst gets RESOURCE_EXHAUSTED with a RetryInfo; other callers and reads
/// are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_exhaustion_is_per_caller_and_carries_retry_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path(), json!({}));
    // One token an hour after a burst of 3: no refill during the test, however slow the machine.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| limited(c, tokens, 1.0 / 3600.0, 3)).await;
    let ch = channel_to(app.addr).await;
    for _ in 0..3 {
        call(&ch, Some(ADMIN_TOKEN), "Reload")
            .await
            .expect("within the burst");
    }
    let err = call(&ch, Some(ADMIN_TOKEN), "Reload")
        .await
        .expect_err("past the burst");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let retry = err
        .get_details_retry_info()
        .expect("RetryInfo detail")
        .retry_delay
        .expect("delay");
    assert!(retry > Duration::from_secs(60), "{retry:?}");
    assert!(err.message().contains("deployer"), "{err:?}");
    call(&ch, Some(OTHER_ADMIN_TOKEN), "Reload")
        .await
        .expect("another caller has its own bucket");
    call(&ch, Some(ADMIN_TOKEN), "GetStatus")
        .await
        .expect("reads are not limited");
    // Every state-changing RPC counts against the same bucket.
    for (rpc, need) in RPCS {
        let r = call(&ch, Some(ADMIN_TOKEN), rpc).await;
        if *need == Need::Admin {
            assert_eq!(r.expect_err(rpc).code(), Code::ResourceExhausted, "{rpc}");
        } else {
            assert!(passed(&r), "{rpc}: {r:?}");
        }
    }
}

/// Without credentials every local process is the caller `loopback`; each connection (peer
/// address) has its own bucket, so one local client in a loop does not lock out the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_callers_have_a_bucket_per_peer() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.admin_rate = 1.0 / 3600.0;
        c.auth.admin_burst = 2;
    })
    .await;
    let looping = channel_to(app.addr).await;
    for _ in 0..2 {
        call(&looping, None, "Reload")
            .await
            .expect("within the burst");
    }
    let err = call(&looping, None, "Reload")
        .await
        .expect_err("past the burst");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let other = channel_to(app.addr).await;
    call(&other, None, "Reload")
        .await
        .expect("another local client (another peer) has its own bucket");
}

/// After the bucket refills, the caller is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_recovers_after_the_retry_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path(), json!({}));
    let app = TestApp::spawn_with(Backend::Sqlite, |c| limited(c, tokens, 20.0, 1)).await;
    let ch = channel_to(app.addr).await;
    // Exhaust: a refusal must come (calls arrive faster than 20/s, or the loop keeps trying).
    eventually("a refused reload", || {
        let ch = ch.clone();
        async move {
            let r = call(&ch, Some(ADMIN_TOKEN), "Reload").await;
            r.err().filter(|s| s.code() == Code::ResourceExhausted)
        }
    })
    .await;
    eventually("a reload accepted again", || {
        let ch = ch.clone();
        async move { call(&ch, Some(ADMIN_TOKEN), "Reload").await.ok() }
    })
    .await;
}

/// Health and reflection stay open with credentials configured: probes and grpcurl's
/// discovery send none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_stay_open_with_credentials_configured() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path(), json!({}));
    let app =
        TestApp::spawn_with(Backend::Sqlite, |c| c.auth.auth_tokens_file = Some(tokens)).await;
    let ch = channel_to(app.addr).await;
    let mut health = HealthClient::new(ch.clone());
    for service in [
        "",
        "hotplane.v1.Patterns",
        "hotplane.v1.HotReload",
        "hotplane.v1.Drain",
    ] {
        health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health {service:?}: {e:?}"));
    }
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection without credentials")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("a reply")
        .expect("one message");
    assert!(
        format!("{reply:?}").contains("hotplane.v1.Patterns"),
        "{reply:?}"
    );
}

/// The one-liner in docs/security.md for a token's hash gives what the tokens file expects.
#[tokio::test]
async fn the_readme_hash_one_liner_matches() {
    let out = tokio::process::Command::new("sh")
        .args(["-c", "printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1"])
        .env("TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .expect("sh runs");
    assert!(out.status.success(), "{out:?}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"))
        .expect("docs/security.md");
    assert!(
        readme.contains("printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1"),
        "docs/security.md shows this command"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        hash_token(ADMIN_TOKEN)
    );
}

/// Paths that look like an open or read method but are not exactly one never reach a
/// state-changing handler without credentials: the router matches exact paths, and anything
/// the auth layer does not know needs `admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_paths_do_not_bypass_the_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path(), json!({}));
    let app =
        TestApp::spawn_with(Backend::Sqlite, |c| c.auth.auth_tokens_file = Some(tokens)).await;
    let ch = channel_to(app.addr).await;
    for path in [
        "/grpc.health.v1.Health/../hotplane.v1.Drain/StartDrain",
        "/grpc.health.v1.Health/%2e%2e/hotplane.v1.Drain/StartDrain",
        "/grpc.reflection.v1.ServerReflection/../../hotplane.v1.Drain/StartDrain",
        "//hotplane.v1.Drain/StartDrain",
        "/hotplane.v1.Drain/StartDrain/",
        "/hotplane.v1.Drain//StartDrain",
        "/hotplane.v1.Drain/StartDrain%00",
        "/hotplane.v1.Drain/startdrain",
    ] {
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.expect("ready");
        let r: Result<tonic::Response<pb::StartDrainResponse>, Status> = grpc
            .unary(
                Request::new(pb::StartDrainRequest {
                    reason: "crafted".into(),
                    ..Default::default()
                }),
                path.parse().expect("path"),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        let code = r.expect_err(path).code();
        assert!(
            matches!(code, Code::Unimplemented | Code::Unauthenticated),
            "{path}: {code:?}"
        );
    }
    let drain = DrainClient::new(ch)
        .get_drain_status(with_token(pb::GetDrainStatusRequest {}, Some(READ_TOKEN)))
        .await
        .expect("drain status")
        .into_inner();
    assert!(
        !drain.status.expect("status").draining,
        "nothing drained the server"
    );
}

/// The table above is every RPC of every hotplane service: an RPC added later must be given a
/// scope here (and in `hotplane::auth`, or it stays admin-only).
#[test]
fn the_table_covers_every_rpc() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut rpcs: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "hotplane.v1")
        .flat_map(|f| f.service.iter())
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect();
    rpcs.sort();
    let mut table: Vec<String> = RPCS.iter().map(|(r, _)| r.to_string()).collect();
    table.sort();
    assert_eq!(rpcs, table, "classify new RPCs in RPCS (tests/it/auth.rs)");
    for (rpc, need) in RPCS {
        let path = set
            .file
            .iter()
            .flat_map(|f| f.service.iter().map(move |s| (f.package(), s)))
            .find_map(|(pkg, s)| {
                s.method
                    .iter()
                    .any(|m| m.name() == *rpc)
                    .then(|| format!("/{pkg}.{}/{rpc}", s.name()))
            })
            .expect("found above");
        let want = match need {
            Need::Read => hotplane::auth::Scope::Read,
            Need::Admin => hotplane::auth::Scope::Admin,
        };
        assert_eq!(
            hotplane::auth::access(&path),
            hotplane::auth::Access::Scoped(want),
            "{path}"
        );
    }
}

fn config_reload_req() -> pb::ReloadRequest {
    pb::ReloadRequest {
        target: pb::Target::Config.into(),
        reason: "test".into(),
        ..Default::default()
    }
}

/// The rate limit is a live key of the config file: a reload applies it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_change_live_with_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path(), json!({}));
    let file = dir.path().join("hotplane.toml");
    std::fs::write(&file, "[limits]\nadmin_rate = 0.0003\nadmin_burst = 1\n").expect("write");
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.auth_tokens_file = Some(tokens);
        c.config_file = Some(file.clone());
    })
    .await;
    let ch = channel_to(app.addr).await;
    call(&ch, Some(ADMIN_TOKEN), "Reload")
        .await
        .expect("the burst of one");
    let err = call(&ch, Some(ADMIN_TOKEN), "Reload")
        .await
        .expect_err("limited");
    assert_eq!(err.code(), Code::ResourceExhausted);

    std::fs::write(&file, "[limits]\nadmin_rate = 0.0\nadmin_burst = 1\n").expect("rewrite");
    let answer = HotReloadClient::new(ch.clone())
        .reload(with_token(config_reload_req(), Some(OTHER_ADMIN_TOKEN)))
        .await
        .expect("another admin reloads the config")
        .into_inner();
    let applied: Vec<&str> = answer
        .config_applied
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(applied, ["limits.admin_rate"], "{answer:?}");
    for _ in 0..5 {
        call(&ch, Some(ADMIN_TOKEN), "Reload")
            .await
            .expect("no limit any more");
    }

    std::fs::write(&file, "[limits]\nadmin_rate = -1.0\n").expect("rewrite");
    let err = HotReloadClient::new(ch.clone())
        .reload(with_token(config_reload_req(), Some(OTHER_ADMIN_TOKEN)))
        .await
        .expect_err("a negative rate");
    assert_eq!(err.code(), Code::InvalidArgument);
    let field = err
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations[0]
        .field
        .clone();
    assert_eq!(field, "limits.admin_rate");
}

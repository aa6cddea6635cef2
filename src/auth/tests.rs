//! Unit tests of the decisions (the integration tests in `tests/it/auth.rs` drive the real
//! server). The non-loopback branch of the default is tested here, by handing the layer a
//! request whose connection info names a remote peer, as tonic would.

use std::{convert::Infallible, net::SocketAddr};

use http::{Request, Response};
use tonic::{Code, Status, body::Body, transport::server::TcpConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use super::*;

fn peer(addr: &str) -> Option<SocketAddr> {
    Some(addr.parse().expect("address"))
}

fn with_tokens(json: &str) -> Authenticator {
    let file: TokenFile = serde_json::from_str(json).expect("json");
    Authenticator {
        credentials: ArcSwap::from_pointee(Credentials::from_file(file).expect("valid file")),
        ..Authenticator::default()
    }
}

#[test]
fn loopback_means_127_8_and_1_and_mapped_and_nothing_else() {
    for p in [
        "127.0.0.1:1",
        "127.9.8.7:1",
        "[::1]:1",
        "[::ffff:127.0.0.1]:1",
    ] {
        assert!(is_loopback_peer(peer(p)), "{p}");
    }
    for p in [
        "10.0.0.1:1",
        "192.0.2.2:1",
        "0.0.0.0:1",
        "[::]:1",
        "[fd00::2]:1",
        "[::ffff:10.0.0.1]:1",
    ] {
        assert!(!is_loopback_peer(peer(p)), "{p}");
    }
    assert!(!is_loopback_peer(None), "an unknown peer is not trusted");
}

#[test]
fn without_credentials_reads_are_open_and_writes_need_loopback() {
    let auth = Authenticator::default();
    assert!(!auth.has_credentials());
    let remote = || Presented {
        peer: peer("10.1.2.3:5000"),
        ..Presented::default()
    };
    let read = auth
        .authorize(Scope::Read, remote(), is_loopback_peer)
        .expect("read is open");
    assert_eq!(
        (read.name.as_str(), read.via),
        ("anonymous", CredentialKind::Anonymous)
    );
    let err = auth
        .authorize(Scope::Admin, remote(), is_loopback_peer)
        .expect_err("remote write");
    let AuthError::PermissionDenied(msg) = err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("--auth-tokens-file") && msg.contains("loopback"),
        "{msg}"
    );
    let local = Presented {
        peer: peer("127.0.0.1:5000"),
        ..Presented::default()
    };
    let caller = auth
        .authorize(Scope::Admin, local, is_loopback_peer)
        .expect("loopback write");
    assert_eq!(
        (caller.name.as_str(), caller.scopes),
        ("loopback", Scopes::ALL)
    );
    // A bearer token is ignored without configured credentials (nothing to check it against),
    // and does not open writes to a remote peer.
    let with_token = Presented {
        authorization: Some(b"Bearer whatever"),
        peer: peer("10.1.2.3:5000"),
        ..Presented::default()
    };
    assert!(
        auth.authorize(Scope::Admin, with_token, is_loopback_peer)
            .is_err()
    );
}

#[test]
fn static_tokens_scopes_and_refusals() {
    let auth = with_tokens(&format!(
        r#"{{"tokens": [
            {{"name": "reader", "sha256": "{}", "scopes": ["read"]}},
            {{"name": "deployer", "sha256": "{}", "scopes": ["admin"]}}
        ]}}"#,
        hash_token("r-secret"),
        hash_token("a-secret").to_uppercase()
    ));
    assert!(auth.has_credentials());
    let ask = |scope, header: Option<&'static [u8]>| {
        auth.authorize(
            scope,
            Presented {
                authorization: header,
                peer: peer("127.0.0.1:1"),
                ..Presented::default()
            },
            is_loopback_peer,
        )
    };
    let reader = ask(Scope::Read, Some(b"Bearer r-secret")).expect("reader reads");
    assert_eq!(
        (reader.name.as_str(), reader.via),
        ("reader", CredentialKind::Token)
    );
    let AuthError::PermissionDenied(msg) =
        ask(Scope::Admin, Some(b"Bearer r-secret")).expect_err("reader writes")
    else {
        panic!("permission denied expected")
    };
    assert!(msg.contains("admin") && msg.contains("reader"), "{msg}");
    assert_eq!(
        ask(Scope::Admin, Some(b"bearer  a-secret "))
            .expect("admin")
            .name,
        "deployer"
    );
    assert!(
        ask(Scope::Read, Some(b"Bearer a-secret")).is_ok(),
        "admin includes read"
    );
    for bad in [
        None,
        Some(&b"Bearer wrong"[..]),
        Some(b"Basic r-secret"),
        Some(b"Bearer "),
        Some(b"r-secret"),
        Some(b"Bearer \xff"),
    ] {
        assert!(
            matches!(ask(Scope::Read, bad), Err(AuthError::Unauthenticated(_))),
            "{bad:?}: loopback is not enough once credentials are configured"
        );
    }
    let err = ask(Scope::Read, Some(b"Bearer wrong")).expect_err("bad token");
    assert!(
        !err.to_string().contains("wrong"),
        "the token is never echoed: {err}"
    );
}

#[test]
fn the_tokens_file_is_checked() {
    let parse = |json: &str| Credentials::from_file(serde_json::from_str(json).expect("json"));
    let h = hash_token("t");
    assert!(
        parse(&format!(
            r#"{{"tokens":[{{"name":"a","sha256":"{h}","scopes":["read"]}}]}}"#
        ))
        .is_ok()
    );
    for bad in [
        r#"{"tokens":[{"name":"a","sha256":"abc","scopes":["read"]}]}"#.to_owned(),
        format!(r#"{{"tokens":[{{"name":"","sha256":"{h}","scopes":["read"]}}]}}"#),
        format!(r#"{{"tokens":[{{"name":"a","sha256":"{h}","scopes":[]}}]}}"#),
        format!(r#"{{"tokens":[{{"name":"a","sha256":"{h}","scopes":["write"]}}]}}"#),
        format!(
            r#"{{"tokens":[{{"name":"a","sha256":"{h}","scopes":["read"]}},{{"name":"b","sha256":"{h}","scopes":["read"]}}]}}"#
        ),
        r#"{"clients":[{"subject":"","scopes":["read"]}]}"#.to_owned(),
    ] {
        assert!(parse(&bad).is_err(), "{bad}");
    }
    assert!(
        serde_json::from_str::<TokenFile>(
            r#"{"tokens":[{"name":"a","token":"plain","scopes":["read"]}]}"#
        )
        .is_err(),
        "unknown fields are refused, plaintext tokens too"
    );
}

#[test]
fn certificates_get_their_listed_scopes_or_the_default() {
    let mut auth = with_tokens(r#"{"clients":[{"subject":"CN=deployer","scopes":["admin"]}]}"#);
    auth.certificate_scopes = Some(Scopes::READ);
    let ask = |scope, subject: &str| {
        auth.authorize(
            scope,
            Presented {
                certificate_subject: Some(subject.to_owned()),
                ..Presented::default()
            },
            |_| false,
        )
    };
    let deployer = ask(Scope::Admin, "CN=deployer").expect("listed subject");
    assert_eq!(
        (deployer.name.as_str(), deployer.via),
        ("CN=deployer", CredentialKind::Certificate)
    );
    assert!(ask(Scope::Read, "CN=viewer").is_ok());
    assert!(matches!(
        ask(Scope::Admin, "CN=viewer"),
        Err(AuthError::PermissionDenied(_))
    ));
}

/// An inner service that reports the caller it was given.
#[derive(Clone)]
struct Echo;

impl Service<Request<Body>> for Echo {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let name = req
            .extensions()
            .get::<Caller>()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let mut resp = Response::new(Body::empty());
        resp.headers_mut()
            .insert("x-caller", name.parse().expect("header value"));
        std::future::ready(Ok(resp))
    }
}

async fn call_from(layer: &AuthLayer, path: &str, remote: &str) -> Result<String, Status> {
    let mut req = Request::builder()
        .uri(path)
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(TcpConnectInfo {
        local_addr: peer("192.0.2.2:50051"),
        remote_addr: peer(remote),
    });
    let resp = layer.layer(Echo).call(req).await.expect("infallible");
    if let Some(status) = Status::from_header_map(resp.headers())
        && status.code() != Code::Ok
    {
        return Err(status);
    }
    Ok(resp.headers()["x-caller"]
        .to_str()
        .expect("ascii")
        .to_owned())
}

#[tokio::test]
async fn the_layer_refuses_remote_writes_by_default_and_passes_the_caller_on() {
    let layer = AuthLayer::new(
        std::sync::Arc::new(Authenticator::default()),
        std::sync::Arc::new(RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 1,
        })),
    );
    for method in ADMIN_METHODS
        .iter()
        .copied()
        .chain(["/hotplane.v1.HotReload/NotYetInvented"])
    {
        let err = call_from(&layer, method, "10.0.0.7:40000")
            .await
            .expect_err(method);
        assert_eq!(err.code(), Code::PermissionDenied, "{method}");
        assert!(
            err.message().contains("--auth-tokens-file"),
            "{}",
            err.message()
        );
        assert_eq!(
            call_from(&layer, method, "127.0.0.1:40000")
                .await
                .expect(method),
            "loopback"
        );
        assert_eq!(
            call_from(&layer, method, "[::1]:40000")
                .await
                .expect(method),
            "loopback"
        );
    }
    for method in READ_METHODS {
        assert_eq!(
            call_from(&layer, method, "10.0.0.7:40000")
                .await
                .expect(method),
            "anonymous"
        );
    }
    let health = call_from(&layer, "/grpc.health.v1.Health/Check", "10.0.0.7:1").await;
    assert_eq!(
        health.expect("health is open"),
        "",
        "open methods get no caller"
    );
}

#[tokio::test]
async fn the_layer_rate_limits_writes_per_caller_with_retry_info() {
    let layer = AuthLayer::new(
        std::sync::Arc::new(Authenticator::default()),
        std::sync::Arc::new(RateLimiter::new(RateLimit {
            per_second: 1.0 / 3600.0,
            burst: 2,
        })),
    );
    let reload = "/hotplane.v1.HotReload/Reload";
    for _ in 0..2 {
        call_from(&layer, reload, "127.0.0.1:1")
            .await
            .expect("within the burst");
    }
    let err = call_from(&layer, reload, "127.0.0.1:1")
        .await
        .expect_err("burst used up");
    assert_eq!(err.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt;
    let retry = err.get_details_retry_info().expect("retry info");
    assert!(retry.retry_delay.expect("delay") > std::time::Duration::from_secs(3000));
    call_from(&layer, "/hotplane.v1.HotReload/GetStatus", "127.0.0.1:1")
        .await
        .expect("reads are not limited");
}

#[test]
fn debug_hides_the_jwt_secret() {
    use clap::Parser;
    let cli = crate::config::Cli::try_parse_from([
        "hotplane",
        "--auth-jwt-algorithm",
        "hs256",
        "--auth-jwt-secret",
        "0123456789abcdef0123456789abcdef-hunter2",
        "--auth-jwt-audience",
        "hotplane",
    ])
    .expect("parses");
    cli.config.validate().expect("valid");
    let shown = format!("{:?}", cli.config);
    assert!(
        !shown.contains("hunter2") && shown.contains("JwtSecret(***)"),
        "{shown}"
    );
    let short = crate::config::Cli::try_parse_from(["hotplane", "--auth-jwt-secret", "short"]);
    assert!(short.is_err(), "short HS256 secrets are refused");
    let no_aud = crate::config::Cli::try_parse_from([
        "hotplane",
        "--auth-jwt-algorithm",
        "hs256",
        "--auth-jwt-secret",
        "0123456789abcdef0123456789abcdef",
    ])
    .expect("parses");
    assert!(
        no_aud
            .config
            .validate()
            .expect_err("no audience")
            .to_string()
            .contains("audience")
    );
}

//! Structure-aware: gRPC request decoding and validation in a real hotplane server (embedded
//! SQLite in a temporary directory, port 0, one HTTP/2 connection), for the Patterns and
//! HotReload services.
//!
//! Each input is one request. Most are typed: arbitrary field values (any text, NaN and
//! infinite numbers, negative ids, deep and wide metadata) encoded with prost, so that they get
//! past protobuf decoding and reach the handlers' validation. Some of those then have their
//! encoding cut short or bytes overwritten, and some are raw bytes sent to any method: those
//! exercise tonic's and prost's decoding of hostile bytes.
//!
//! What must hold for every input:
//! - no UNKNOWN, DATA_LOSS or UNAVAILABLE answer: the server is up and its store reachable,
//!   so a request can only be refused for what it is (a panic in a handler shows as UNKNOWN or
//!   a reset stream);
//! - INTERNAL only when the bytes do not decode as the method's request type (that is how
//!   tonic answers undecodable messages, as grpc-go does);
//! - INVALID_ARGUMENT always carries a BadRequest detail naming a field;
//! - afterwards the server still answers its health check with SERVING.
#![no_main]

use std::{sync::OnceLock, time::Duration};

use arbitrary::Arbitrary;
use bytes::{Buf, BufMut, Bytes};
use hotplane::{config::Config, pb, startup::Application};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};
use tonic_types::StatusExt;

/// The methods exercised, with their request type's decoder (to tell undecodable bytes apart).
const METHODS: &[(&str, fn(&[u8]) -> bool)] = &[
    ("/hotplane.v1.Patterns/MatchPattern", |b| pb::MatchPatternRequest::decode(b).is_ok()),
    ("/hotplane.v1.Patterns/BatchMatchPatterns", |b| {
        pb::BatchMatchPatternsRequest::decode(b).is_ok()
    }),
    ("/hotplane.v1.Patterns/LearnPattern", |b| pb::LearnPatternRequest::decode(b).is_ok()),
    ("/hotplane.v1.Patterns/GetPattern", |b| pb::GetPatternRequest::decode(b).is_ok()),
    ("/hotplane.v1.Patterns/ListPatterns", |b| pb::ListPatternsRequest::decode(b).is_ok()),
    ("/hotplane.v1.Patterns/ApprovePattern", |b| pb::ApprovePatternRequest::decode(b).is_ok()),
    ("/hotplane.v1.Patterns/DisablePattern", |b| pb::DisablePatternRequest::decode(b).is_ok()),
    ("/hotplane.v1.Patterns/DeletePattern", |b| pb::DeletePatternRequest::decode(b).is_ok()),
    ("/hotplane.v1.HotReload/Reload", |b| pb::ReloadRequest::decode(b).is_ok()),
    ("/hotplane.v1.HotReload/Rollback", |b| pb::RollbackRequest::decode(b).is_ok()),
    ("/hotplane.v1.HotReload/GetStatus", |b| pb::GetStatusRequest::decode(b).is_ok()),
    ("/hotplane.v1.HotReload/ListAudit", |b| pb::ListAuditRequest::decode(b).is_ok()),
];

/// A metadata value: JSON-like, nested (arbitrary bounds the depth by the input's length).
#[derive(Arbitrary, Debug)]
enum Value {
    Null,
    Number(f64),
    Text(String),
    Bool(bool),
    Object(Vec<(String, Value)>),
    List(Vec<Value>),
}

impl Value {
    fn pb(&self) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match self {
            Value::Null => Kind::NullValue(0),
            Value::Number(n) => Kind::NumberValue(*n),
            Value::Text(s) => Kind::StringValue(s.clone()),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Object(fields) => Kind::StructValue(object(fields)),
            Value::List(items) => Kind::ListValue(prost_types::ListValue {
                values: items.iter().map(Value::pb).collect(),
            }),
        };
        prost_types::Value { kind: Some(kind) }
    }
}

fn object(fields: &[(String, Value)]) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields.iter().map(|(k, v)| (k.clone(), v.pb())).collect(),
    }
}

/// A typed request. Store and bus swaps are left out on purpose: a fuzzed URL must not make
/// the server open files or connect anywhere.
#[derive(Arbitrary, Debug)]
enum Typed {
    Match {
        query: String,
        min_confidence: Option<f64>,
        min_generation: u64,
        metadata_as_json: bool,
    },
    Batch {
        queries: Vec<String>,
        min_confidence: Option<f64>,
        min_generation: u64,
    },
    Learn {
        query: String,
        category: String,
        confidence: f64,
        metadata: Option<Vec<(String, Value)>>,
        created_by: String,
        metadata_json: String,
    },
    Get {
        id: i64,
    },
    List {
        page_size: i32,
        page_token: String,
        status: i32,
        category: String,
    },
    Approve {
        id: i64,
        reason: String,
    },
    Disable {
        id: i64,
        reason: String,
    },
    Delete {
        id: i64,
        reason: String,
    },
    Reload {
        /// Patterns, config or unspecified only (see above).
        target: u8,
        pattern_id: Option<i64>,
        reason: String,
        validate_only: bool,
        full: bool,
        broadcast: bool,
        wait_for_fleet_ms: Option<u8>,
    },
    Rollback {
        target: i32,
        to_generation: u64,
        broadcast: bool,
        reason: String,
        wait_for_fleet_ms: Option<u8>,
    },
    Status,
    Audit {
        page_size: i32,
        page_token: String,
        since: Option<(i64, i32)>,
        until: Option<(i64, i32)>,
        action: String,
        caller: String,
    },
}

fn duration_ms(ms: Option<u8>) -> Option<prost_types::Duration> {
    ms.map(|ms| prost_types::Duration {
        seconds: 0,
        nanos: i32::from(ms) * 1_000_000,
    })
}

fn timestamp(t: Option<(i64, i32)>) -> Option<prost_types::Timestamp> {
    t.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos })
}

impl Typed {
    /// The method's index in [`METHODS`] and the encoded request.
    fn encode(&self) -> (usize, Vec<u8>) {
        match self {
            Typed::Match { query, min_confidence, min_generation, metadata_as_json } => (
                0,
                pb::MatchPatternRequest {
                    query: query.clone(),
                    min_confidence: *min_confidence,
                    min_generation: *min_generation,
                    metadata_as_json: *metadata_as_json,
                }
                .encode_to_vec(),
            ),
            Typed::Batch { queries, min_confidence, min_generation } => (
                1,
                pb::BatchMatchPatternsRequest {
                    queries: queries.clone(),
                    min_confidence: *min_confidence,
                    min_generation: *min_generation,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            Typed::Learn { query, category, confidence, metadata, created_by, metadata_json } => {
                let mut b = pb::LearnPatternRequest {
                    query: query.clone(),
                    category: category.clone(),
                    confidence: *confidence,
                    created_by: created_by.clone(),
                    metadata_json: metadata_json.clone(),
                    ..Default::default()
                }
                .encode_to_vec();
                // Field 4, google.protobuf.Struct, appended: protobuf merges fields in any
                // order, and this keeps the target independent of the Rust type the server
                // maps Struct to.
                if let Some(fields) = metadata {
                    prost::encoding::message::encode(4, &object(fields), &mut b);
                }
                (2, b)
            }
            Typed::Get { id } => (3, pb::GetPatternRequest { id: *id, ..Default::default() }.encode_to_vec()),
            Typed::List { page_size, page_token, status, category } => (
                4,
                pb::ListPatternsRequest {
                    page_size: *page_size,
                    page_token: page_token.clone(),
                    status: *status,
                    category: category.clone(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            Typed::Approve { id, reason } => (
                5,
                pb::ApprovePatternRequest { id: *id, reason: reason.clone(), ..Default::default() }.encode_to_vec(),
            ),
            Typed::Disable { id, reason } => (
                6,
                pb::DisablePatternRequest { id: *id, reason: reason.clone(), ..Default::default() }.encode_to_vec(),
            ),
            Typed::Delete { id, reason } => (
                7,
                pb::DeletePatternRequest { id: *id, reason: reason.clone() }.encode_to_vec(),
            ),
            Typed::Reload {
                target,
                pattern_id,
                reason,
                validate_only,
                full,
                broadcast,
                wait_for_fleet_ms,
            } => {
                let target = match target % 3 {
                    0 => pb::Target::Unspecified,
                    1 => pb::Target::Patterns,
                    _ => pb::Target::Config,
                };
                (
                    8,
                    pb::ReloadRequest {
                        target: target.into(),
                        pattern_id: *pattern_id,
                        reason: reason.clone(),
                        validate_only: *validate_only,
                        full: *full,
                        broadcast: *broadcast,
                        wait_for_fleet: duration_ms(*wait_for_fleet_ms),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )
            }
            Typed::Rollback { target, to_generation, broadcast, reason, wait_for_fleet_ms } => (
                9,
                pb::RollbackRequest {
                    target: *target,
                    to_generation: *to_generation,
                    broadcast: *broadcast,
                    reason: reason.clone(),
                    wait_for_fleet: duration_ms(*wait_for_fleet_ms),
                }
                .encode_to_vec(),
            ),
            Typed::Status => (10, pb::GetStatusRequest {}.encode_to_vec()),
            Typed::Audit { page_size, page_token, since, until, action, caller } => (
                11,
                pb::ListAuditRequest {
                    page_size: *page_size,
                    page_token: page_token.clone(),
                    since: timestamp(*since),
                    until: timestamp(*until),
                    action: action.clone(),
                    caller: caller.clone(),
                }
                .encode_to_vec(),
            ),
        }
    }
}

/// One input.
#[derive(Arbitrary, Debug)]
enum Input {
    /// A typed request as encoded.
    Typed(Typed),
    /// A typed request, cut to `keep` bytes and with `(offset, byte)` overwrites.
    Damaged { request: Typed, keep: u16, writes: Vec<(u16, u8)> },
    /// Any bytes to any method.
    Raw { method: u8, bytes: Vec<u8> },
}

impl Input {
    fn request(&self) -> (usize, Vec<u8>) {
        match self {
            Input::Typed(t) => t.encode(),
            Input::Damaged { request, keep, writes } => {
                let (m, mut b) = request.encode();
                b.truncate(usize::from(*keep));
                for &(at, byte) in writes {
                    if let Some(slot) = b.get_mut(usize::from(at)) {
                        *slot = byte;
                    }
                }
                (m, b)
            }
            Input::Raw { method, bytes } => (usize::from(*method) % METHODS.len(), bytes.clone()),
        }
    }
}

/// Sends and receives message bodies as they are, so the server's own decoding sees the bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The server and a client connection, made once per fuzzing process.
struct Harness {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    _dir: tempfile::TempDir,
}

async fn call(channel: &Channel, method: &'static str, body: Vec<u8>) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("connection not ready: {e}")))?;
    let mut request = tonic::Request::new(Bytes::from(body));
    // A request may legitimately wait (a fleet wait, a load); the client gives up, not the test.
    request.set_timeout(Duration::from_secs(5));
    let path = http::uri::PathAndQuery::from_static(method);
    grpc.unary(request, path, RawCodec).await.map(tonic::Response::into_inner)
}

/// Whether the health check answers SERVING (`HealthCheckResponse { status: SERVING }`).
async fn serving(channel: &Channel) -> bool {
    matches!(call(channel, "/grpc.health.v1.Health/Check", Vec::new()).await,
        Ok(b) if b.as_ref() == [0x08, 0x01])
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let channel = runtime.block_on(async {
            let mut config = Config::for_database(url);
            config.auth.admin_rate = 0.0; // the fuzzer calls admin methods as fast as it can
            let app = Application::build(config).await.expect("the server builds");
            let addr = app.local_addr();
            tokio::spawn(app.run_until_stopped(std::future::pending()));
            let channel = Channel::from_shared(format!("http://{addr}"))
                .expect("an address")
                .connect()
                .await
                .expect("a connection to the server");
            while !serving(&channel).await {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // A few served patterns, so that matches, gets and rollbacks find something.
            for (q, c) in [("show me the money", "finance"), ("where is my order", "orders")] {
                let req = pb::LearnPatternRequest {
                    query: q.into(),
                    category: c.into(),
                    confidence: 0.9,
                    ..Default::default()
                };
                call(&channel, METHODS[2].0, req.encode_to_vec()).await.expect("learn");
            }
            channel
        });
        Harness { runtime, channel, _dir: dir }
    })
}

fuzz_target!(|input: Input| {
    let h = harness();
    let (m, body) = input.request();
    let (method, decodes) = METHODS[m];
    // Store and bus swaps are out of scope (see `Typed`), whichever way the bytes got there.
    if let Ok(r) = pb::ReloadRequest::decode(body.as_slice())
        && m == 8
        && (!r.database_url.is_empty()
            || !r.redis_url.is_empty()
            || matches!(r.target(), pb::Target::Store | pb::Target::Bus))
    {
        return;
    }
    let decoded = decodes(&body);
    let answer = h.runtime.block_on(call(&h.channel, method, body));
    if let Err(status) = answer {
        let code = status.code();
        assert!(
            !matches!(code, Code::Unknown | Code::DataLoss | Code::Unavailable),
            "{method}: {code:?} {:?}",
            status.message()
        );
        assert!(
            code != Code::Internal || !decoded,
            "{method}: INTERNAL for a request that decodes: {:?}",
            status.message()
        );
        if code == Code::InvalidArgument {
            let details = status.get_error_details();
            let named = details
                .bad_request()
                .is_some_and(|br| {
                    !br.field_violations.is_empty()
                        && br.field_violations.iter().all(|v| !v.field.is_empty())
                });
            assert!(named, "{method}: INVALID_ARGUMENT without a field: {:?}", status.message());
        }
    }
    assert!(h.runtime.block_on(serving(&h.channel)), "{method}: the server stopped serving");
});

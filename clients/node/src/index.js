// hotplane's Node client: the gRPC clients loaded from the protos shipped in this package
// (../proto), plain objects <-> google.protobuf.Struct, google.rpc error details, a WatchStatus
// iterator that resumes across reconnects and server restarts, and token / TLS credentials.
//
// CommonJS, so that both `require('@hotplane/client')` and `import` work on every Node >= 18
// (require() of an ES module needs Node 22.12+).
//
// 64-bit integers (ids, generations, counters) are decimal strings (proto-loader `longs:
// String`): exact beyond 2^53 and JSON-safe. Send them as strings (numbers and BigInts are
// accepted too). Field names are lowerCamelCase (`afterEventId`), enums are their names
// (`'EVENT_KIND_SNAPSHOT'`).
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

/** The directory holding every .proto this package loads. */
const PROTO_DIR = path.join(__dirname, '..', 'proto');

const PROTO_FILES = [
  'hotplane/v1/hot_reload.proto',
  'hotplane/v1/patterns.proto',
  'hotplane/v1/drain.proto',
  'grpc/health/v1/health.proto',
];

/** The options every message is loaded with (see the header). */
const LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

let loaded;
/** The grpc-js package object of the shipped protos (hotplane.v1, grpc.health.v1). */
function loadPackage() {
  if (!loaded) {
    const def = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(def);
  }
  return loaded;
}

let detailsRoot;
/** protobufjs types of google.rpc (Status and the error details), from the shipped protos. */
function rpcRoot() {
  if (!detailsRoot) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => path.join(PROTO_DIR, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto', 'google/rpc/code.proto']);
    root.resolveAll();
    detailsRoot = root;
  }
  return detailsRoot;
}

// ------------------------------------------------------------------------------------------
// Credentials

/**
 * Channel credentials: TLS when `tls` is given (`{ca, cert, key}` as PEM Buffers or strings;
 * `cert` and `key` for mTLS), else plaintext.
 */
function channelCredentials(tls) {
  if (!tls) return grpc.credentials.createInsecure();
  const buf = (v) => (v == null ? null : Buffer.isBuffer(v) ? v : Buffer.from(v));
  return grpc.credentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert));
}

/**
 * A client interceptor that sends `authorization: Bearer TOKEN` on every call. An interceptor,
 * not call credentials, so it works on plaintext channels too (grpc-js refuses call
 * credentials without TLS); send tokens over plaintext only on a trusted network.
 */
function bearerInterceptor(token) {
  if (typeof token !== 'string' || token === '') throw new TypeError('token: a non-empty string is required');
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/**
 * Clients for `address` ("host:port"): `{hotReload, patterns, drain, health, close()}`.
 * Options: `token` (a bearer token), `tls` (see channelCredentials), `serverName` (the name
 * the server certificate is checked against, when it is not the address's host), `channelOptions`.
 */
function connect(address, { token, tls, serverName, channelOptions } = {}) {
  const pkg = loadPackage();
  const creds = channelCredentials(tls);
  const options = { ...(channelOptions || {}) };
  if (serverName) {
    options['grpc.ssl_target_name_override'] = serverName;
    options['grpc.default_authority'] = serverName;
  }
  if (token != null) options.interceptors = [bearerInterceptor(token)];
  const hotReload = new pkg.hotplane.v1.HotReload(address, creds, options);
  // One channel for all four: the others reuse the first client's.
  const channel = hotReload.getChannel();
  const withChannel = { ...options, channelOverride: channel };
  return {
    hotReload,
    patterns: new pkg.hotplane.v1.Patterns(address, creds, withChannel),
    drain: new pkg.hotplane.v1.Drain(address, creds, withChannel),
    health: new pkg.grpc.health.v1.Health(address, creds, withChannel),
    close() {
      hotReload.close();
    },
  };
}

/** `client.method(request)` as a Promise (unary calls), with optional call options. */
function call(client, method, request = {}, callOptions = {}) {
  return new Promise((resolve, reject) => {
    client[method](request, new grpc.Metadata(), callOptions, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// ------------------------------------------------------------------------------------------
// Struct <-> plain objects

function valueOf(v, where) {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  switch (typeof v) {
    case 'string':
      return { stringValue: v };
    case 'boolean':
      return { boolValue: v };
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`${where}: ${v} has no JSON form (Struct numbers are finite)`);
      return { numberValue: v };
    case 'bigint':
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
        throw new TypeError(`${where}: ${v} does not fit a Struct number (a double) exactly: use metadataJson`);
      }
      return { numberValue: Number(v) };
    case 'object':
      if (Array.isArray(v)) return { listValue: { values: v.map((x, i) => valueOf(x === undefined ? null : x, `${where}[${i}]`)) } };
      if (v instanceof Date) return { stringValue: v.toISOString() };
      return { structValue: toStruct(v, where) };
    default:
      throw new TypeError(`${where}: a ${typeof v} cannot be stored in a Struct`);
  }
}

/**
 * A plain JS object as a google.protobuf.Struct message object: nested objects, lists, null,
 * strings, booleans and finite numbers, as JSON.stringify would see them (keys whose value is
 * undefined are left out; undefined in a list is null; a Date is its ISO text).
 */
function toStruct(obj, where = 'metadata') {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new TypeError(`${where}: a Struct holds a plain object, not ${Array.isArray(obj) ? 'an array' : String(obj)}`);
  }
  const fields = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined) fields[k] = valueOf(v, `${where}.${k}`);
  }
  return { fields };
}

function plainOf(value) {
  if (value == null) return null;
  const kind = value.kind || Object.keys(value).find((k) => value[k] != null && k !== 'kind');
  switch (kind) {
    case 'nullValue':
    case undefined:
      return null;
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return fromStruct(value.structValue);
    case 'listValue':
      return ((value.listValue && value.listValue.values) || []).map(plainOf);
    default:
      throw new TypeError(`not a google.protobuf.Value: ${JSON.stringify(value)}`);
  }
}

/** A google.protobuf.Struct message object (as received) as a plain object; null stays null. */
function fromStruct(struct) {
  if (struct == null) return null;
  const out = {};
  for (const [k, v] of Object.entries(struct.fields || {})) out[k] = plainOf(v);
  return out;
}

/**
 * The metadata of a Pattern or MatchedPattern as a plain object, whichever form the server sent
 * (`metadataJson` when the request set `metadataAsJson`, else the Struct); null when none.
 */
function metadataOf(pattern) {
  if (!pattern) return null;
  if (pattern.metadataJson) return JSON.parse(pattern.metadataJson);
  return fromStruct(pattern.metadata);
}

function isStructShape(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const keys = Object.keys(v);
  if (keys.length !== 1 || keys[0] !== 'fields') return false;
  const f = v.fields;
  return f !== null && typeof f === 'object' && Object.values(f).every((x) => x !== null && typeof x === 'object');
}

/**
 * Throws a TypeError naming `field` unless `value` is a google.protobuf.Struct message object
 * (`{fields: {...}}`, as toStruct makes). This is the Node trap: a plain object given as a
 * Struct field is encoded by protobufjs as an EMPTY Struct, silently.
 */
function assertStruct(value, field = 'metadata') {
  if (!isStructShape(value)) {
    throw new TypeError(
      `${field}: ${JSON.stringify(value)} is not a google.protobuf.Struct (grpc-js would send it as an empty one): ` +
        `pass toStruct(object), or the object as ${field}Json text (learnRequest does that)`,
    );
  }
  return value;
}

/**
 * A LearnPatternRequest from plain values: `metadata` is a plain object (or absent) and is sent
 * as `metadataJson` (JSON text: the simpler form, exact for integers beyond 2^53 written in
 * the text), and the answer's row comes back with `metadataJson` too (`metadataAsJson`); read
 * it with metadataOf(). To send a Struct instead, pass `metadataStruct: toStruct(obj)`.
 */
function learnRequest({ metadata, metadataStruct, ...rest }) {
  const req = { metadataAsJson: true, ...rest };
  if (metadata !== undefined && metadataStruct !== undefined) {
    throw new TypeError('metadata: give metadata (a plain object) or metadataStruct (a Struct), not both');
  }
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw new TypeError(`metadata: a plain object is required, not ${JSON.stringify(metadata)}`);
    }
    req.metadataJson = JSON.stringify(metadata);
  }
  if (metadataStruct !== undefined) req.metadata = assertStruct(metadataStruct, 'metadata');
  return req;
}

// ------------------------------------------------------------------------------------------
// Error details

const DETAIL_FIELDS = {
  'google.rpc.BadRequest': 'badRequest',
  'google.rpc.RetryInfo': 'retryInfo',
  'google.rpc.ErrorInfo': 'errorInfo',
  'google.rpc.PreconditionFailure': 'preconditionFailure',
  'google.rpc.ResourceInfo': 'resourceInfo',
  'google.rpc.DebugInfo': 'debugInfo',
  'google.rpc.QuotaFailure': 'quotaFailure',
  'google.rpc.RequestInfo': 'requestInfo',
  'google.rpc.Help': 'help',
  'google.rpc.LocalizedMessage': 'localizedMessage',
};

const TO_OBJECT = { longs: String, enums: String, defaults: true };

/**
 * The google.rpc.Status a grpc-js error carries in its `grpc-status-details-bin` trailer,
 * decoded: `{code, message, details: [{type, ...fields}], badRequest, retryInfo, errorInfo,
 * preconditionFailure, resourceInfo, ...}` (each detail by its type, absent when not sent).
 * `retryInfo.retryDelayMs` is the delay in milliseconds. Null when the error has no details.
 */
function errorDetails(err) {
  const md = err && err.metadata;
  const raw = md && typeof md.get === 'function' ? md.get('grpc-status-details-bin')[0] : undefined;
  if (!raw) return null;
  const root = rpcRoot();
  const status = root.lookupType('google.rpc.Status').decode(Buffer.isBuffer(raw) ? raw : Buffer.from(raw));
  const out = { code: status.code, message: status.message, details: [] };
  for (const any of status.details) {
    const url = any.typeUrl || any.type_url || ''; // protobufjs's built-in Any keeps type_url
    const typeName = url.slice(url.lastIndexOf('/') + 1);
    let type;
    try {
      type = root.lookupType(typeName);
    } catch {
      out.details.push({ type: typeName, unknown: true, value: Buffer.from(any.value) });
      continue;
    }
    const detail = type.toObject(type.decode(any.value), TO_OBJECT);
    if (typeName === 'google.rpc.RetryInfo' && detail.retryDelay) {
      const d = detail.retryDelay;
      detail.retryDelayMs = Number(d.seconds) * 1000 + Math.round((d.nanos || 0) / 1e6);
    }
    out.details.push({ type: typeName, ...detail });
    const key = DETAIL_FIELDS[typeName];
    if (key && !out[key]) out[key] = detail;
  }
  return out;
}

/** The fields a BadRequest names (`fieldViolations[].field`), [] when none. */
function badFields(err) {
  const d = errorDetails(err);
  return d && d.badRequest ? d.badRequest.fieldViolations.map((v) => v.field) : [];
}

// ------------------------------------------------------------------------------------------
// WatchStatus

/** Codes after which the watch reconnects: the server went away or is busy. */
const TRANSIENT = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.UNKNOWN,
  grpc.status.CANCELLED,
  grpc.status.INTERNAL,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
]);

/** An event as the helpers give it: `patternId` null (not "0") on events about no pattern. */
function normalizeEvent(ev) {
  return { ...ev, patternId: ev.patternId && ev.patternId !== '0' ? ev.patternId : null };
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * WatchStatus as an async iterator that never misses or repeats an event across reconnects.
 *
 * When the stream ends (the server's --watch-max-age, a shutdown) or the connection drops, it
 * reconnects (backoff from `minDelayMs` to `maxDelayMs`) and resumes after the last event it
 * yielded (`afterEventId`). Event ids are numbered per server process, so before resuming it
 * asks GetStatus which instance answers: a different one (the server restarted) is asked for a
 * fresh snapshot instead, yielded with `resync: true` and `restarted: true`. The server itself
 * answers a resume it cannot serve (the ids left its replay buffer, or the stream fell behind)
 * with a snapshot with `resync: true`: everything before it may have been missed; the snapshot's
 * `status` is the state to start again from.
 *
 * `request`: WatchStatusRequest fields (`targets`, `kinds`, `afterEventId`). `options.signal`
 * (an AbortSignal) ends the iteration; so does `break`. A refusal (not transient) is thrown, as
 * is a failure before the first event (more likely a wrong address than a restart).
 * `options.onReconnect(err)` is awaited before each reconnect, with the error (null when the
 * server ended the stream cleanly).
 */
async function* watchStatus(clients, request = {}, options = {}) {
  const { signal, minDelayMs = 100, maxDelayMs = 5000, onReconnect } = options;
  let last = BigInt(request.afterEventId || 0);
  let instance = null;
  let reached = false;
  let delay = minDelayMs;
  while (!(signal && signal.aborted)) {
    let after = last;
    let restarted = false;
    let stream;
    let lost = null;
    try {
      if (last > 0n) {
        const st = await call(clients.hotReload, 'getStatus', {});
        if (instance !== null && st.instanceId !== instance) {
          after = 0n;
          restarted = true;
        }
        instance = st.instanceId;
      }
      stream = clients.hotReload.watchStatus({ ...request, afterEventId: after.toString() });
      const abort = () => stream.cancel();
      if (signal) signal.addEventListener('abort', abort, { once: true });
      try {
        for await (const raw of stream) {
          reached = true;
          delay = minDelayMs;
          const ev = normalizeEvent(raw);
          if (ev.kind === 'EVENT_KIND_SNAPSHOT' && ev.status) {
            if (restarted) {
              ev.resync = true;
              ev.restarted = true;
              restarted = false;
            }
            instance = ev.status.instanceId;
          }
          last = BigInt(ev.eventId);
          yield ev;
        }
      } finally {
        if (signal) signal.removeEventListener('abort', abort);
        stream.cancel();
      }
    } catch (err) {
      if (signal && signal.aborted) return;
      if (!reached || err.code === undefined || !TRANSIENT.has(err.code)) throw err;
      lost = err;
    }
    if (signal && signal.aborted) return;
    if (onReconnect) await onReconnect(lost);
    await sleep(delay, signal);
    delay = Math.min(maxDelayMs, delay * 2);
  }
}

module.exports = {
  PROTO_DIR,
  PROTO_FILES,
  LOADER_OPTIONS,
  loadPackage,
  channelCredentials,
  bearerInterceptor,
  connect,
  call,
  toStruct,
  fromStruct,
  metadataOf,
  assertStruct,
  learnRequest,
  errorDetails,
  badFields,
  normalizeEvent,
  watchStatus,
  status: grpc.status,
};

// Credentials against a real hotplane: bearer tokens from a tokens file (admin vs read, none),
// and TLS with a throwaway CA (openssl, installed by scripts/test.sh).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('../src');
const { startServer, tempDir, tokensFile, certificates, READ_TOKEN, ADMIN_TOKEN, DEADLINE } = require('./server');

const refused = (p) => p.then(() => assert.fail('accepted'), (e) => e);

test('bearer tokens: read may read, only admin may change; none is UNAUTHENTICATED', DEADLINE, async () => {
  const dir = tempDir();
  const server = await startServer({ dir, args: ['--auth-tokens-file', tokensFile(dir)] });
  const none = h.connect(server.addr);
  const reader = h.connect(server.addr, { token: READ_TOKEN });
  const admin = h.connect(server.addr, { token: ADMIN_TOKEN });
  const wrong = h.connect(server.addr, { token: 'not-a-configured-token' });
  const learnReq = h.learnRequest({ query: 'learned by the deployer', category: 'auth', confidence: 0.95 });
  try {
    for (const c of [none, wrong]) {
      const err = await refused(h.call(c.hotReload, 'getStatus', {}));
      assert.equal(err.code, h.status.UNAUTHENTICATED, err.message);
    }
    const status = await h.call(reader.hotReload, 'getStatus', {});
    assert.ok(status.instanceId);
    const denied = await refused(h.call(reader.patterns, 'learnPattern', learnReq));
    assert.equal(denied.code, h.status.PERMISSION_DENIED);
    assert.match(denied.message, /admin/);
    const drainDenied = await refused(h.call(reader.drain, 'startDrain', { reason: 'reader' }));
    assert.equal(drainDenied.code, h.status.PERMISSION_DENIED);

    const learned = await h.call(admin.patterns, 'learnPattern', learnReq);
    assert.equal(learned.pattern.createdBy, 'llm');
    const m = await h.call(reader.patterns, 'matchPattern', { query: 'Learned by the deployer' });
    assert.equal(m.pattern.id, learned.pattern.id);
    // The iterator sends the token too.
    const it = h.watchStatus(reader);
    assert.equal((await it.next()).value.kind, 'EVENT_KIND_SNAPSHOT');
    await it.return();
    await assert.rejects(h.watchStatus(none).next(), (e) => e.code === h.status.UNAUTHENTICATED);
  } finally {
    for (const c of [none, reader, admin, wrong]) c.close();
    await server.stop();
  }
  assert.throws(() => h.connect(server.addr, { token: '' }), /token/);
});

test('TLS: the CA verifies the server; plaintext and an unknown CA do not connect', DEADLINE, async () => {
  const dir = tempDir();
  const certs = certificates(dir);
  const server = await startServer({ dir, args: ['--tls-cert-file', certs.cert, '--tls-key-file', certs.key] });
  const ca = fs.readFileSync(certs.ca);
  const tls = h.connect(server.addr, { tls: { ca } });
  const byName = h.connect(server.addr.replace('127.0.0.1', 'localhost'), { tls: { ca }, serverName: 'localhost' });
  const plain = h.connect(server.addr);
  const otherDir = tempDir();
  const stranger = h.connect(server.addr, { tls: { ca: fs.readFileSync(certificates(otherDir).ca) } });
  try {
    const status = await h.call(tls.hotReload, 'getStatus', {});
    assert.ok(status.instanceId);
    assert.equal((await h.call(byName.hotReload, 'getStatus', {})).instanceId, status.instanceId);
    const learned = await h.call(tls.patterns, 'learnPattern', h.learnRequest({ query: 'learned over tls', category: 't', confidence: 0.95, metadata: { tls: true } }));
    assert.deepEqual(h.metadataOf(learned.pattern), { tls: true });
    for (const c of [plain, stranger]) {
      const err = await refused(h.call(c.hotReload, 'getStatus', {}, { deadline: Date.now() + 30_000 }));
      assert.equal(err.code, h.status.UNAVAILABLE, err.message);
    }
  } finally {
    for (const c of [tls, byName, plain, stranger]) c.close();
    await server.stop();
  }
});

test('mTLS: the client certificate is the credential; without one the handshake fails', DEADLINE, async () => {
  const dir = tempDir();
  const certs = certificates(dir);
  const server = await startServer({
    dir,
    args: ['--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-client-ca-file', certs.ca],
  });
  const ca = fs.readFileSync(certs.ca);
  const withCert = h.connect(server.addr, { tls: { ca, cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) } });
  const without = h.connect(server.addr, { tls: { ca } });
  try {
    assert.ok((await h.call(withCert.hotReload, 'getStatus', {})).instanceId);
    // --tls-client-scopes defaults to read: the certificate reads, it does not change.
    const denied = await refused(h.call(withCert.patterns, 'learnPattern', h.learnRequest({ query: 'learned by a certificate', category: 'c', confidence: 0.95 })));
    assert.equal(denied.code, h.status.PERMISSION_DENIED, denied.message);
    const err = await refused(h.call(without.hotReload, 'getStatus', {}, { deadline: Date.now() + 30_000 }));
    assert.equal(err.code, h.status.UNAVAILABLE, err.message);
  } finally {
    withCert.close();
    without.close();
    await server.stop();
  }
});

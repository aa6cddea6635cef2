// Against a real hotplane (temporary SQLite database): learn, match a different spelling,
// batch; metadata as a plain object both ways; the Struct trap refused loudly; bad input and
// the structured details of other refusals decoded to the field and reason.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../src');
const { startServer, DEADLINE } = require('./server');

let server;
let c;
before(async () => {
  server = await startServer();
  c = h.connect(server.addr);
});
after(async () => {
  c.close();
  const { code } = await server.stop();
  assert.equal(code, 0, 'hotplane exits 0 on SIGTERM');
});

const learn = (req) => h.call(c.patterns, 'learnPattern', req);

test('learn, then match a different spelling, then a batch', DEADLINE, async () => {
  const learned = await learn(h.learnRequest({ query: 'Show my Workflows', category: 'workflows', confidence: 0.95 }));
  assert.equal(learned.created, true);
  assert.equal(learned.served, true);
  assert.match(learned.pattern.id, /^[1-9][0-9]*$/, 'ids are decimal strings');
  const m = await h.call(c.patterns, 'matchPattern', { query: '  show MY workflows!! ' });
  assert.equal(m.matched, true);
  assert.equal(m.pattern.id, learned.pattern.id);
  assert.equal(m.pattern.category, 'workflows');
  assert.equal(m.normalizedQuery, learned.pattern.normalizedPattern);
  assert.ok(BigInt(m.generation) >= BigInt(learned.generation));

  const b = await h.call(c.patterns, 'batchMatchPatterns', {
    queries: ['SHOW my workflows', 'something never learned', 'show my   workflows?'],
  });
  assert.deepEqual(
    b.results.map((r) => [r.matched, r.matched ? r.pattern.id : null]),
    [[true, learned.pattern.id], [false, null], [true, learned.pattern.id]],
  );
});

const META = { action: 'list_workflows', limit: 20, filters: { owner: null, tags: ['a', 'b'] }, dry: false };

test('metadata as a plain object round trips as JSON text and as a Struct', DEADLINE, async () => {
  const viaJson = await learn(h.learnRequest({ query: 'metadata as json text', category: 'm', confidence: 0.95, metadata: META }));
  assert.equal(viaJson.pattern.metadata, null, 'metadataAsJson: no Struct in the answer');
  assert.deepEqual(h.metadataOf(viaJson.pattern), META);

  const viaStruct = await learn({ query: 'metadata as a struct', category: 'm', confidence: 0.95, metadata: h.toStruct(META) });
  assert.equal(viaStruct.pattern.metadataJson, '');
  assert.deepEqual(h.fromStruct(viaStruct.pattern.metadata), META);

  // Both forms read back either way on a match.
  for (const [query, id] of [['metadata as json text', viaJson.pattern.id], ['metadata as a struct', viaStruct.pattern.id]]) {
    const asStruct = await h.call(c.patterns, 'matchPattern', { query });
    const asJson = await h.call(c.patterns, 'matchPattern', { query, metadataAsJson: true });
    assert.equal(asStruct.pattern.id, id);
    assert.deepEqual(h.metadataOf(asStruct.pattern), META);
    assert.deepEqual(JSON.parse(asJson.pattern.metadataJson), META);
  }
});

test('the Struct trap is refused loudly, naming metadata', DEADLINE, async () => {
  // The server refuses the raw object (an empty Struct on the wire) next to metadataJson.
  const err = await learn({ query: 'the trap', category: 'm', confidence: 0.95, metadata: { action: 'x' }, metadataJson: '{"action":"x"}' })
    .then(() => assert.fail('accepted'), (e) => e);
  assert.equal(err.code, h.status.INVALID_ARGUMENT);
  assert.deepEqual(h.badFields(err), ['metadata']);
  // Alone, the server cannot tell it from an empty object: the helper refuses it before sending.
  assert.throws(() => learn(h.learnRequest({ query: 'the trap', metadataStruct: { action: 'x' } })), /^TypeError: metadata:/);
  const missing = await h.call(c.patterns, 'matchPattern', { query: 'the trap' });
  assert.equal(missing.matched, false, 'nothing was stored');
});

test('bad input is decoded to the field', DEADLINE, async () => {
  const cases = [
    [{ query: '', category: 'c', confidence: 0.9 }, 'query'],
    [{ query: 'fine text', category: '', confidence: 0.9 }, 'category'],
    [{ query: 'fine text', category: 'c', confidence: 7 }, 'confidence'],
    [{ query: 'fine text', category: 'c', confidence: 0.9, metadataJson: '[1]' }, 'metadata_json'],
  ];
  for (const [req, field] of cases) {
    const err = await learn(req).then(() => assert.fail(`accepted ${JSON.stringify(req)}`), (e) => e);
    assert.equal(err.code, h.status.INVALID_ARGUMENT, err.message);
    const d = h.errorDetails(err);
    assert.equal(d.code, h.status.INVALID_ARGUMENT);
    assert.deepEqual(d.badRequest.fieldViolations.map((v) => v.field), [field], err.message);
    assert.ok(d.badRequest.fieldViolations[0].description.length > 0);
  }
});

test('NOT_FOUND and GENERATION_BEHIND carry ErrorInfo, ResourceInfo and PreconditionFailure', DEADLINE, async () => {
  const nf = await h.call(c.patterns, 'getPattern', { id: '987654' }).then(() => assert.fail('found'), (e) => e);
  assert.equal(nf.code, h.status.NOT_FOUND);
  const d = h.errorDetails(nf);
  assert.equal(d.errorInfo.reason, 'PATTERN_NOT_FOUND');
  assert.equal(d.errorInfo.domain, 'hotplane.dev');
  assert.deepEqual(d.errorInfo.metadata, { pattern_id: '987654' });
  assert.equal(d.resourceInfo.resourceType, 'pattern');
  assert.equal(d.resourceInfo.resourceName, '987654');

  const served = (await h.call(c.patterns, 'matchPattern', { query: 'anything at all' })).generation;
  const ahead = (BigInt(served) + 1000n).toString();
  const gb = await h.call(c.patterns, 'matchPattern', { query: 'anything at all', minGeneration: ahead })
    .then(() => assert.fail('served'), (e) => e);
  assert.equal(gb.code, h.status.FAILED_PRECONDITION);
  const g = h.errorDetails(gb);
  assert.equal(g.errorInfo.reason, 'GENERATION_BEHIND');
  assert.equal(g.errorInfo.metadata.min_generation, ahead);
  assert.equal(g.errorInfo.metadata.served_generation, served);
  assert.deepEqual(
    g.preconditionFailure.violations.map((v) => [v.type, v.subject]),
    [['GENERATION', 'min_generation']],
  );
  assert.equal(g.retryInfo, undefined, 'no RetryInfo on FAILED_PRECONDITION');
});

test('UNAVAILABLE while draining carries RetryInfo', DEADLINE, async () => {
  await h.call(c.drain, 'startDrain', { reason: 'node test' });
  try {
    const err = await h.call(c.patterns, 'matchPattern', { query: 'show my workflows' }).then(() => assert.fail('served'), (e) => e);
    assert.equal(err.code, h.status.UNAVAILABLE);
    const d = h.errorDetails(err);
    assert.ok(d.retryInfo, 'RetryInfo');
    assert.equal(typeof d.retryInfo.retryDelayMs, 'number');
    assert.ok(d.retryInfo.retryDelayMs > 0);
  } finally {
    await h.call(c.drain, 'stopDrain', {});
  }
});

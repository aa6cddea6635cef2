// WatchStatus through the resuming iterator, and health Watch through a drain, against a real
// hotplane: resumes after a stream ends with no gap or duplicate; across a server restart (same
// address, same SQLite file, a new instance and numbering) an explicit resync snapshot, never
// events of the new numbering taken for the old.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../src');
const { startServer, tempDir, DEADLINE } = require('./server');

const learn = (c, query) =>
  h.call(c.patterns, 'learnPattern', { query, category: 'watch', confidence: 0.95 }).then((r) => r.pattern.id);

/** Pulls events from `it` until `done(event)`, returning all pulled, the last one included. */
async function until(it, done) {
  const seen = [];
  for (;;) {
    const { value, done: end } = await it.next();
    assert.ok(!end, `the watch ended; seen ${JSON.stringify(seen.map((e) => e.kind))}`);
    seen.push(value);
    if (done(value)) return seen;
  }
}

const learnedEvent = (id) => (e) => e.kind === 'EVENT_KIND_PATTERN_LEARNED' && e.patternId === id;

/** Numbered events have increasing ids; snapshots and heartbeats carry the last id numbered. */
function increasing(events) {
  const ids = events.map((e) => [e.eventId, e.kind]);
  for (let i = 1; i < events.length; i++) {
    const [a, b] = [BigInt(events[i - 1].eventId), BigInt(events[i].eventId)];
    const numbered = !['EVENT_KIND_SNAPSHOT', 'EVENT_KIND_HEARTBEAT'].includes(events[i].kind);
    assert.ok(numbered ? b > a : b >= a, `ids increase: ${JSON.stringify(ids)}`);
  }
}

test('resumes after the server ends each stream, with no gap or duplicate', DEADLINE, async () => {
  // Streams end after 1 s (--watch-max-age); a pattern is learned while each one is down.
  const server = await startServer({ args: ['--watch-max-age', '1s'] });
  const c = h.connect(server.addr);
  const learnedWhileDown = [];
  const it = h.watchStatus(c, {}, {
    minDelayMs: 50,
    onReconnect: async (err) => {
      assert.equal(err, null, 'the server ended the stream cleanly');
      if (learnedWhileDown.length < 3) learnedWhileDown.push(await learn(c, `learned while down ${learnedWhileDown.length}`));
    },
  });
  try {
    const events = await until(it, (e) => learnedWhileDown.length === 3 && learnedEvent(learnedWhileDown[2])(e));
    assert.equal(events[0].kind, 'EVENT_KIND_SNAPSHOT');
    assert.equal(events.filter((e) => e.kind === 'EVENT_KIND_SNAPSHOT').length, 1, 'resumed, never resynced');
    assert.ok(events.every((e) => !e.resync));
    increasing(events);
    for (const id of learnedWhileDown) {
      assert.equal(events.filter(learnedEvent(id)).length, 1, `pattern ${id}'s event exactly once`);
    }
    const noPattern = events.filter((e) => e.kind !== 'EVENT_KIND_PATTERN_LEARNED');
    assert.ok(noPattern.every((e) => e.patternId === null), 'patternId null on events about no pattern');
  } finally {
    await it.return();
    c.close();
    await server.stop();
  }
});

test('across a server restart: an explicit resync snapshot from the new instance', DEADLINE, async () => {
  const dir = tempDir();
  const first = await startServer({ dir });
  const c = h.connect(first.addr);
  const it = h.watchStatus(c, {}, { minDelayMs: 50 });
  let second;
  try {
    const [snapshot] = await until(it, (e) => e.kind === 'EVENT_KIND_SNAPSHOT');
    const firstInstance = snapshot.status.instanceId;
    const before = await learn(c, 'learned before the restart');
    const seen = await until(it, learnedEvent(before));
    const lastSeen = BigInt(seen.at(-1).eventId);

    // The watch is not pulled while the server restarts on the same address and database, and
    // the new server numbers more events than the old one had: resuming after lastSeen there
    // would be served from the new numbering, a silent gap.
    assert.equal((await first.stop()).code, 0);
    second = await startServer({ dir, listen: first.addr });
    const other = h.connect(second.addr);
    for (let n = 0; n < 3; n++) await learn(other, `learned while the watch was away ${n}`);
    const now = await until(h.watchStatus(other), () => true);
    other.close();
    assert.ok(BigInt(now[0].eventId) > lastSeen + 1n, `the new server numbered more: ${now[0].eventId} vs ${lastSeen}`);

    // Up to the first snapshot or learned event: it must be the snapshot.
    const events = await until(it, (e) => e.kind === 'EVENT_KIND_SNAPSHOT' || e.kind === 'EVENT_KIND_PATTERN_LEARNED');
    const resync = events.at(-1);
    assert.equal(resync.kind, 'EVENT_KIND_SNAPSHOT', `a snapshot, not the new numbering's events: ${JSON.stringify(events.map((e) => [e.eventId, e.kind]))}`);
    assert.equal(resync.resync, true);
    assert.equal(resync.restarted, true);
    assert.notEqual(resync.status.instanceId, firstInstance);
    const after = await learn(c, 'learned after the restart');
    const rest = await until(it, learnedEvent(after));
    increasing([resync, ...rest]);
    assert.equal(rest.filter(learnedEvent(after)).length, 1);
  } finally {
    await it.return();
    c.close();
    if (second) await second.stop();
    await first.stop();
  }
});

test('a resume the server cannot serve is an explicit resync snapshot', DEADLINE, async () => {
  const server = await startServer();
  const c = h.connect(server.addr);
  const it = h.watchStatus(c, { afterEventId: '999999' });
  try {
    const { value } = await it.next();
    assert.equal(value.kind, 'EVENT_KIND_SNAPSHOT');
    assert.equal(value.resync, true);
    assert.equal(value.restarted, undefined, 'the same instance');
    assert.ok(BigInt(value.eventId) < 999999n, 'the id to resume after next time');
  } finally {
    await it.return();
    c.close();
    await server.stop();
  }
});

test('health Watch flips through StartDrain and StopDrain', DEADLINE, async () => {
  const server = await startServer();
  const c = h.connect(server.addr);
  const stream = c.health.watch({ service: 'hotplane.v1.Patterns' });
  const it = stream[Symbol.asyncIterator]();
  const next = async () => (await it.next()).value.status;
  try {
    assert.equal(await next(), 'SERVING');
    const started = await h.call(c.drain, 'startDrain', { reason: 'node test' });
    assert.equal(started.status.draining, true);
    assert.equal(await next(), 'NOT_SERVING');
    await h.call(c.drain, 'stopDrain', {});
    assert.equal(await next(), 'SERVING');
  } finally {
    stream.cancel();
    c.close();
    await server.stop();
  }
});

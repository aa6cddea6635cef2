// The dashboard in a real browser (Debian's chromium through playwright-core) against the real
// server binary: live updates from gRPC calls made by grpcurl, the drain badge, recovery after a
// restart, the final status of a server shutting down, the fleet table on a shared Redis bus
// with a pinned straggler, and the scopes.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const s = require('./support');

let b;
before(async () => {
  b = await s.browser();
});
after(async () => {
  if (b) await b.close();
});

/** The time each live update took to show, printed after the tests (measured, not asserted). */
const shownIn = [];
after(() => {
  if (shownIn.length === 0) return;
  const ms = shownIn.map(([, t]) => t).sort((x, y) => x - y);
  console.log(`dashboard: what was waited for showed in ${ms[0]}..${ms[ms.length - 1]} ms (median ${ms[ms.length >> 1]}, ${ms.length} waits): ${shownIn.map(([w, t]) => `${w} ${t}`).join(', ')}`);
});

/** Waits (at most `timeout`) until `selector`'s text contains `want`; records how long it took. */
async function shows(page, selector, want, timeout = s.SHOWS_WITHIN) {
  const started = performance.now();
  await page.waitForFunction(
    ([sel, w]) => {
      const el = document.querySelector(sel);
      return el && el.textContent.includes(w);
    },
    [selector, String(want)],
    { timeout },
  );
  shownIn.push([selector, Math.round(performance.now() - started)]);
}

/** Waits (at most SHOWS_WITHIN) for `selector` to match; records how long it took. */
async function appears(page, selector) {
  const started = performance.now();
  await page.waitForSelector(selector, { timeout: s.SHOWS_WITHIN });
  shownIn.push([selector, Math.round(performance.now() - started)]);
}

test('live: loads without console errors; Reload, LearnPattern and drains made by grpcurl show live (the time each took is printed)', s.DEADLINE, async () => {
  const srv = await s.startServer();
  try {
    const { page, errors } = await s.openPage(b, srv.url);
    await page.waitForSelector('#conn[data-state=live]');
    await shows(page, '#instance', srv.instance, 5_000);

    const learned = await s.grpcurl(srv.addr, 'hotplane.v1.Patterns/LearnPattern', s.learn('quali sono i workflow attivi'));
    await shows(page, '#generation', learned.generation);
    await shows(page, '#events li[data-kind=PATTERN_LEARNED]', `generation ${learned.generation}`);

    // A rollback pins; the Reload that follows unpins and builds a new generation.
    await s.grpcurl(srv.addr, 'hotplane.v1.HotReload/Rollback', { target: 'TARGET_PATTERNS', toGeneration: '1', reason: 'dashboard test' });
    await appears(page, '#pin-badge:not([hidden])');
    const reload = await s.grpcurl(srv.addr, 'hotplane.v1.HotReload/Reload', { target: 'TARGET_PATTERNS', reason: 'dashboard test' });
    assert.ok(Number(reload.generationAfter) > Number(learned.generation), JSON.stringify(reload));
    await shows(page, '#generation', reload.generationAfter);
    await shows(page, '#events li[data-kind=RELOAD_SUCCEEDED]', `generation ${reload.generationAfter}`);

    await s.grpcurl(srv.addr, 'hotplane.v1.Drain/StartDrain', { reason: 'dashboard test' });
    await appears(page, '#drain-badge[data-draining=true]');
    await shows(page, '#drain-reason', 'dashboard test');
    await s.grpcurl(srv.addr, 'hotplane.v1.Drain/StopDrain', {});
    await appears(page, '#drain-badge[data-draining=false]');
    // The page's own stream counts as an open stream, like a WatchStatus stream.
    await shows(page, '#open-streams', '1');

    // Each event once: ids in the log are unique.
    const ids = await page.$$eval('#events li .id', (els) => els.map((e) => e.textContent).filter(Boolean));
    assert.equal(new Set(ids).size, ids.length, `duplicate events: ${ids}`);

    // An action from the page (loopback, no credentials: admin): confirm, then the answer.
    await page.click('#act-reload');
    await page.click('#confirm-ok');
    await shows(page, '#action-result', 'OK', 5_000);
    assert.match(await page.textContent('#action-result'), /generation_after/);

    await s.screenshot(page, 'dashboard-live.png');
    assert.deepEqual(errors, [], 'console errors');
  } finally {
    await srv.stop();
  }
});

test('restart: the page says reconnecting, then recovers on the new process and says it resynced', s.DEADLINE, async () => {
  const first = await s.startServer();
  const dir = first.dir;
  let second;
  try {
    const { page } = await s.openPage(b, first.url);
    await page.waitForSelector('#conn[data-state=live]');
    await first.stop();
    await page.waitForSelector('#conn[data-state=reconnecting]', { timeout: 10_000 });
    second = await s.startServer({ dir, admin: first.admin });
    assert.notEqual(second.instance, first.instance);
    await shows(page, '#instance', second.instance, 15_000);
    await shows(page, '#events', 'resynced', 5_000);
    await page.waitForSelector('#conn:is([data-state=resynced], [data-state=live])');
    // The new process's events keep arriving.
    const learned = await s.grpcurl(second.addr, 'hotplane.v1.Patterns/LearnPattern', s.learn('after the restart'));
    await shows(page, '#generation', learned.generation);
  } finally {
    await first.stop();
    if (second) await second.stop();
  }
});

test('shutdown: the final status a stopping server sends shows (shutting down, and its drain), though it repeats the last event id', s.DEADLINE, async () => {
  const srv = await s.startServer();
  try {
    const { page, errors } = await s.openPage(b, srv.url);
    await page.waitForSelector('#conn[data-state=live]');
    await shows(page, '#instance', srv.instance, 5_000);
    await appears(page, '#drain-badge[data-draining=false]');
    assert.deepEqual(errors, [], 'console errors');

    // SIGTERM: the drain starts (a DRAIN_CHANGED event), then each stream gets the final status
    // (hot_reload.proto: kind DRAIN_CHANGED, the id of the last event before it) and ends.
    await srv.stop();
    await shows(page, '#drain-state', 'shutting down');
    await shows(page, '#drain-badge', 'shutting down');
    await shows(page, '#events li[data-kind=SHUTDOWN]', 'draining: shutdown');
    await page.waitForSelector('#conn[data-state=reconnecting]', { timeout: s.SHOWS_WITHIN });
    // The final status repeats an id, so its line names none; every line that does is unique.
    const ids = await page.$$eval('#events li .id', (els) => els.map((e) => e.textContent).filter(Boolean));
    assert.equal(new Set(ids).size, ids.length, `duplicate events: ${ids}`);
    await s.screenshot(page, 'dashboard-shutdown.png');
  } finally {
    await srv.stop();
  }
});

test('scopes: credentials are asked for; a read token sees no actions and is refused them; admin gets them', s.DEADLINE, async () => {
  const dir = s.tempDir();
  const srv = await s.startServer({ dir, args: ['--auth-tokens-file', s.tokensFile(dir)] });
  try {
    const { page, context, errors } = await s.openPage(b, srv.url);
    await page.waitForSelector('#login:not([hidden])');
    assert.equal(await page.isHidden('#main'), true);
    // Nothing without a session.
    const anon = await page.evaluate(async () => (await fetch('/api/status')).status);
    assert.equal(anon, 401);

    await page.fill('#token', 'not-a-token');
    await page.click('#login-form button');
    await shows(page, '#login-error', 'not valid', 5_000);

    await page.fill('#token', s.READ_TOKEN);
    await page.click('#login-form button');
    await page.waitForSelector('#conn[data-state=live]');
    await shows(page, '#user', 'reader · read');
    assert.equal(await page.isHidden('#actions'), true, 'a read token sees no action buttons');
    assert.equal(await page.$$eval('#actions button:visible', (els) => els.length), 0);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'hotplane_session');
    assert.ok(session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
    const refused = await page.evaluate(async () => {
      const r = await fetch('/api/actions/drain/start', { method: 'POST', headers: { 'x-hotplane-dashboard': '1' }, body: '{}' });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'PERMISSION_DENIED');
    const drain = await s.grpcurl(srv.addr, 'hotplane.v1.Drain/GetDrainStatus', {}, [`authorization: Bearer ${s.READ_TOKEN}`]);
    assert.ok(!drain.status.draining, 'the refused action changed nothing');

    await page.click('#sign-out');
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#token', s.ADMIN_TOKEN);
    await page.click('#login-form button');
    await page.waitForSelector('#actions:not([hidden])');
    await shows(page, '#user', 'deployer · admin');
    await page.click('#act-drain-start');
    await page.click('#confirm-ok');
    await page.waitForSelector('#drain-badge[data-draining=true]', { timeout: 5_000 });
    await s.screenshot(page, 'dashboard-admin.png');
    assert.deepEqual(errors.filter((e) => !/401|403/.test(e)), [], 'console errors');
  } finally {
    await srv.stop();
  }
});

test('fleet: two replicas on one Redis bus both show, and a pinned one is a straggler', s.DEADLINE, async () => {
  const dir = s.tempDir();
  const redis = process.env.HOTPLANE_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
  const channel = `hotplane-dashboard-test-${crypto.randomBytes(6).toString('hex')}`;
  const bus = ['--redis-url', redis, '--bus-channel', channel, '--fleet-heartbeat', '1s', '--fleet-ttl', '5s'];
  const a = await s.startServer({ dir, args: bus });
  const b2 = await s.startServer({ dir, args: bus });
  try {
    const { page, errors } = await s.openPage(b, a.url);
    await page.waitForSelector('#conn[data-state=live]');
    await page.waitForSelector(`#fleet-table tr[data-instance="${b2.instance}"]`, { timeout: 30_000 });
    await page.waitForSelector(`#fleet-table tr[data-instance="${a.instance}"]`);
    await shows(page, '#fleet-summary', 'converged', 30_000);
    await shows(page, '#bus-state', 'connected', 10_000);

    let last;
    for (const q of ['quali sono i workflow attivi', 'mostra gli ordini aperti', 'elenca i clienti']) {
      last = await s.grpcurl(a.addr, 'hotplane.v1.Patterns/LearnPattern', s.learn(q));
    }
    // The other replica follows over the bus: converged again (it lags for a moment meanwhile).
    await shows(page, `#fleet-table tr[data-instance="${b2.instance}"] td:nth-child(3)`, last.generation, 30_000);
    await shows(page, '#fleet-summary', 'converged', 30_000);
    // Pin the other replica on an older generation (a rollback there, not broadcast).
    // To the newest retained generation that served something (so the hashes differ visibly).
    const status = await s.grpcurl(b2.addr, 'hotplane.v1.HotReload/GetStatus', {});
    const patterns = status.targets.find((t) => t.target === 'TARGET_PATTERNS');
    const older = (patterns.retained || []).find((g) => g.generation !== patterns.current.generation && Number(g.itemCount || 0) > 0);
    const to = older ? older.generation : '1';
    const pinned = await s.grpcurl(b2.addr, 'hotplane.v1.HotReload/Rollback', { target: 'TARGET_PATTERNS', toGeneration: to, reason: 'dashboard test' });
    await page.waitForSelector(`#fleet-table tr.straggler[data-instance="${b2.instance}"]`, { timeout: 30_000 });
    await shows(page, `#fleet-table tr[data-instance="${b2.instance}"] td:nth-child(3)`, pinned.current.generation);
    await page.waitForSelector(`#fleet-table tr:not(.straggler)[data-instance="${a.instance}"]`);
    await shows(page, '#fleet-summary', '1 straggler');
    const file = await s.screenshot(page, 'dashboard-fleet.png');
    if (process.env.DASHBOARD_DOCS_SCREENSHOT) {
      fs.copyFileSync(file, path.join(s.ROOT, 'docs', 'img', 'dashboard.png'));
    }
    assert.deepEqual(errors, [], 'console errors');
  } finally {
    await a.stop();
    await b2.stop();
  }
});

// The protos shipped in the package: an exact copy of the repository's proto/, every import
// resolvable from the package alone (no ENOENT google/rpc/status.proto), and loadable from any
// working directory.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { PROTO_DIR } = require('../src');
const { ROOT } = require('./server');

function files(dir, base = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? files(full, base) : [path.relative(base, full)];
  });
}

test('the shipped hotplane protos equal proto/ byte for byte', () => {
  const repo = path.join(ROOT, 'proto', 'hotplane');
  const shipped = path.join(PROTO_DIR, 'hotplane');
  const want = files(repo).sort();
  assert.deepEqual(files(shipped).sort(), want, 'same files; refresh: see clients/node/proto/README.md');
  for (const f of want) {
    assert.ok(
      fs.readFileSync(path.join(shipped, f)).equals(fs.readFileSync(path.join(repo, f))),
      `clients/node/proto/hotplane/${f} differs from proto/hotplane/${f}; refresh: see clients/node/proto/README.md`,
    );
  }
});

test('every import of every shipped proto is shipped too', () => {
  const all = files(PROTO_DIR).filter((f) => f.endsWith('.proto'));
  for (const f of all) {
    const text = fs.readFileSync(path.join(PROTO_DIR, f), 'utf8');
    for (const [, imp] of text.matchAll(/^import\s+(?:public\s+)?"([^"]+)";/gm)) {
      assert.ok(fs.existsSync(path.join(PROTO_DIR, imp)), `${f} imports ${imp}, which is not shipped`);
    }
  }
  for (const f of ['google/rpc/status.proto', 'google/rpc/error_details.proto', 'google/rpc/code.proto']) {
    assert.ok(all.includes(f), `${f} is shipped`);
  }
});

test('the package loads its protos from any working directory', () => {
  const script = `const h = require(${JSON.stringify(path.join(__dirname, '..'))});
    const p = h.loadPackage();
    if (typeof p.hotplane.v1.Patterns !== 'function') throw new Error('no Patterns');
    const e = { metadata: { get: () => [Buffer.from([8, 3, 18, 1, 120])] } };
    process.stdout.write(JSON.stringify(h.errorDetails(e)));`;
  const out = execFileSync(process.execPath, ['-e', script], { cwd: '/' }).toString();
  assert.deepEqual(JSON.parse(out), { code: 3, message: 'x', details: [] });
});

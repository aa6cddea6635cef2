// Test support: a real hotplane binary (built by cargo) started on 127.0.0.1:0 with its own
// temporary SQLite database, and the throwaway certificates and tokens the tests need.
// Node built-ins only: tests/dashboard requires this file by its path (it is outside that
// package, so it must need nothing from this package's node_modules).
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..', '..', '..');

/** Options of every test that talks to a server: a deadline, so a hang fails instead of waiting forever. */
const DEADLINE = { timeout: 300_000 };

/**
 * The hotplane binary: $HOTPLANE_BIN (scripts/test.sh sets it to the release build), else the
 * first of target/debug/hotplane and target/release/hotplane that exists (`releaseFirst`: the
 * other way round; tests/dashboard asks for that).
 */
function binary({ releaseFirst = false } = {}) {
  if (process.env.HOTPLANE_BIN) return process.env.HOTPLANE_BIN;
  const builds = ['target/debug/hotplane', 'target/release/hotplane'];
  if (releaseFirst) builds.reverse();
  for (const p of builds) {
    const full = path.join(ROOT, p);
    if (fs.existsSync(full)) return full;
  }
  throw new Error(`no hotplane binary: run \`cargo build${releaseFirst ? ' --release' : ''}\` (or set HOTPLANE_BIN)`);
}

/** A temporary directory (its name starting with `prefix`) removed when the process exits. */
function tempDir(prefix = 'hotplane-node-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts hotplane with `args` (plus --listen, default 127.0.0.1:0, --database-url, default a
 * SQLite file in `dir`, and --admin-listen `admin` when given), resolving to
 * `{addr, instance, dir, child, stop()}` once it logs that it listens; with `admin`, also
 * `admin` (the admin listener's bound address) and `url` (the dashboard's). The tests of
 * tests/dashboard start their servers with this too (its test/support.js).
 */
function startServer({ dir = tempDir(), listen = '127.0.0.1:0', admin = null, args = [], bin = binary() } = {}) {
  const env = { ...process.env, HOTPLANE_LOG_FORMAT: 'json' };
  for (const k of Object.keys(env)) if (k.startsWith('HOTPLANE_') && k !== 'HOTPLANE_LOG_FORMAT') delete env[k];
  const adminArgs = admin ? ['--admin-listen', admin] : [];
  const child = spawn(
    bin,
    ['--listen', listen, ...adminArgs, '--database-url', `sqlite://${path.join(dir, 'hotplane.db')}`, ...args],
    { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
  const seen = [];
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stderr });
    let adminAddr = null;
    let listening = false;
    lines.on('line', (line) => {
      if (listening) return; // keep draining, so the child never blocks on a full pipe
      seen.push(line);
      let v;
      try {
        v = JSON.parse(line);
      } catch {
        return;
      }
      if (v.message === 'admin listening') adminAddr = v.addr;
      if (v.message === 'hotplane listening') {
        listening = true;
        resolve({
          addr: v.addr,
          instance: v.instance_id,
          ...(admin ? { admin: adminAddr, url: `http://${adminAddr}/` } : {}),
          dir,
          child,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    exited.then(({ code, sig }) => {
      if (!listening) reject(new Error(`hotplane exited (${code ?? sig}) before listening:\n${seen.join('\n')}`));
    });
  });
}

const READ_TOKEN = 'node-read-token-41c2';
const ADMIN_TOKEN = 'node-admin-token-9d7e';

/** A tokens file (docs/security.md) with a read and an admin token; its path. */
function tokensFile(dir) {
  const sha = (t) => crypto.createHash('sha256').update(t).digest('hex');
  const file = path.join(dir, 'tokens.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      tokens: [
        { name: 'reader', sha256: sha(READ_TOKEN), scopes: ['read'] },
        { name: 'deployer', sha256: sha(ADMIN_TOKEN), scopes: ['admin'] },
      ],
    }),
  );
  return file;
}

/** A throwaway CA, a server certificate for 127.0.0.1 and localhost and a client certificate (CN=node-client), made with openssl. */
function certificates(dir) {
  const f = (n) => path.join(dir, n);
  const openssl = (...a) => execFileSync('openssl', a, { stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=hotplane node test CA',
    '-keyout', f('ca.key'), '-out', f('ca.pem'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr'));
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', f('ext.cnf'), '-out', f('server.pem'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=node-client', '-keyout', f('client.key'), '-out', f('client.csr'));
  fs.writeFileSync(f('client.cnf'), 'extendedKeyUsage=clientAuth\n'); // an X.509 v3 certificate: rustls refuses v1
  openssl('x509', '-req', '-in', f('client.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', f('client.cnf'), '-out', f('client.pem'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

module.exports = { ROOT, DEADLINE, binary, tempDir, startServer, tokensFile, certificates, READ_TOKEN, ADMIN_TOKEN };

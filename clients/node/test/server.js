// Test support: a real hotplane binary (built by cargo) started on 127.0.0.1:0 with its own
// temporary SQLite database, and the throwaway certificates and tokens the tests need.
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
 * The hotplane binary: $HOTPLANE_BIN (scripts/test.sh sets it to the release build), else
 * target/debug/hotplane, else target/release/hotplane.
 */
function binary() {
  if (process.env.HOTPLANE_BIN) return process.env.HOTPLANE_BIN;
  for (const p of ['target/debug/hotplane', 'target/release/hotplane']) {
    const full = path.join(ROOT, p);
    if (fs.existsSync(full)) return full;
  }
  throw new Error('no hotplane binary: run `cargo build` (or set HOTPLANE_BIN)');
}

/** A temporary directory removed when the process exits. */
function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hotplane-node-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts hotplane with `args` (plus --listen, default 127.0.0.1:0, and --database-url, default
 * a SQLite file in `dir`), resolving to `{addr, child, stop()}` once it logs that it listens.
 */
function startServer({ dir = tempDir(), listen = '127.0.0.1:0', args = [] } = {}) {
  const env = { ...process.env, HOTPLANE_LOG_FORMAT: 'json' };
  for (const k of Object.keys(env)) if (k.startsWith('HOTPLANE_') && k !== 'HOTPLANE_LOG_FORMAT') delete env[k];
  const child = spawn(
    binary(),
    ['--listen', listen, '--database-url', `sqlite://${path.join(dir, 'hotplane.db')}`, ...args],
    { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
  const seen = [];
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stderr });
    let listening = false;
    lines.on('line', (line) => {
      if (listening) return; // keep draining, so the child never blocks on a full pipe
      let v;
      try {
        v = JSON.parse(line);
      } catch {
        seen.push(line);
        return;
      }
      seen.push(line);
      if (v.message === 'hotplane listening') {
        listening = true;
        resolve({
          addr: v.addr,
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

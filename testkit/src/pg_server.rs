//! A private PostgreSQL server per test: a primary, and streaming standbys cloned from it, that a
//! test may stop, kill and promote (a failover) without touching the shared test server.
//!
//! The server binaries are the installed PostgreSQL's (`/usr/lib/postgresql/<version>/bin`,
//! Debian's layout, else `pg_config --bindir`, else `PATH`): `scripts/test.sh` installs them
//! with the shared server. PostgreSQL refuses to run as root, so as root every command runs as
//! the `postgres` system user (`runuser`), which owns the data directories. Each server listens
//! on 127.0.0.1 only, on a port picked free, with its socket in its own directory; `fsync` is
//! off (a test's data need not survive a host crash, only a server crash, which it does).

use std::{
    net::TcpListener,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
};

/// One private PostgreSQL server: its data directory and port. Stopped (immediately) when
/// dropped.
pub struct PgServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

/// The directory holding `initdb`, `pg_ctl` and `pg_basebackup`.
fn bindir() -> PathBuf {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    debian.sort_by_key(|b| {
        let version = b.parent().and_then(|v| v.file_name());
        version.and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    if let Some(newest) = debian.pop() {
        return newest;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    PathBuf::new() // PATH
}

/// Whether this process runs as root (then PostgreSQL must run as `postgres`).
fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A free loopback port (bound, then released for the server to bind).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A command running `program`, as `postgres` when root (PostgreSQL refuses to run as root).
fn command(program: &Path) -> Command {
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `program` from `bin` with `args`, as `postgres` when root; panics with its output on
/// failure.
fn run(bin: &Path, program: &str, args: &[&str]) {
    let program = bin.join(program);
    let out = command(&program)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (a private PostgreSQL server needs the server binaries: \
                 Debian's postgresql package, which ./scripts/test.sh installs)",
                program.display()
            )
        });
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary directory the server's user owns.
fn owned_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hotplane-pg-")
        .tempdir()
        .expect("a temporary directory");
    if as_root() {
        let done = Command::new("chown")
            .args(["postgres:postgres", path(dir.path())])
            .status();
        assert!(
            done.is_ok_and(|s| s.success()),
            "chown postgres {}",
            dir.path().display()
        );
    }
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

impl PgServer {
    /// A new primary: `initdb` (trust auth, superuser `postgres`, replication allowed from
    /// loopback), started.
    pub async fn primary() -> PgServer {
        blocking(|| {
            let bin = bindir();
            let dir = owned_dir();
            let server = PgServer {
                port: free_port(),
                bin,
                dir,
            };
            run(
                &server.bin,
                "initdb",
                &[
                    "-D",
                    path(&server.data()),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "--no-instructions",
                ],
            );
            server.start_blocking();
            server
        })
        .await
    }

    /// A new streaming standby of this server (`pg_basebackup -R`: asynchronous replication),
    /// started.
    pub async fn standby(&self) -> PgServer {
        let source = self.port;
        let bin = self.bin.clone();
        blocking(move || {
            let dir = owned_dir();
            let server = PgServer {
                port: free_port(),
                bin,
                dir,
            };
            let port = source.to_string();
            run(
                &server.bin,
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-D",
                    path(&server.data()),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
            );
            server.start_blocking();
            server
        })
        .await
    }

    /// The admin URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `host:port`, for a proxy to forward to.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start_blocking(&self) {
        let (bin, port, data, dir) = self.parts();
        PgServer::start_parts(&bin, port, &data, &dir);
    }

    /// Starts the server again after [`Self::stop`].
    pub async fn start(&self) {
        let (bin, port, data, dir) = self.parts();
        blocking(move || {
            PgServer::start_parts(&bin, port, &data, &dir);
        })
        .await
    }

    fn parts(&self) -> (PathBuf, u16, PathBuf, PathBuf) {
        (
            self.bin.clone(),
            self.port,
            self.data(),
            self.dir.path().to_owned(),
        )
    }

    fn start_parts(bin: &Path, port: u16, data: &Path, dir: &Path) {
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c wal_level=replica \
             -c max_wal_senders=4 -c shared_buffers=16MB",
            path(dir)
        );
        let log = dir.join("server.log");
        run(
            bin,
            "pg_ctl",
            &[
                "-D",
                path(data),
                "-o",
                &opts,
                "-l",
                path(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server: `fast` (a clean shutdown) or, with `crash`, `immediate` (no
    /// checkpoint: as a killed server).
    pub async fn stop(&self, crash: bool) {
        let (bin, _, data, _) = self.parts();
        blocking(move || {
            let mode = if crash { "immediate" } else { "fast" };
            run(
                &bin,
                "pg_ctl",
                &["-D", path(&data), "-m", mode, "-w", "stop"],
            );
        })
        .await
    }

    /// Promotes a standby to primary (`pg_ctl promote`, waiting until it accepts writes).
    pub async fn promote(&self) {
        let (bin, _, data, _) = self.parts();
        blocking(move || {
            run(
                &bin,
                "pg_ctl",
                &["-D", path(&data), "-w", "-t", "60", "promote"],
            );
        })
        .await
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Best effort: a server already stopped makes pg_ctl fail, which is fine here.
        let _ = command(&self.bin.join("pg_ctl"))
            .args(["-D", path(&self.data()), "-m", "immediate", "-w", "stop"])
            .current_dir("/")
            .output();
    }
}

/// Runs `f` on the blocking pool (the commands wait for the server).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a PostgreSQL server command panicked")
}

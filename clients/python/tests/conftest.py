# Fixtures of the hotplane_client tests: a REAL hotplane process per test.
#
# The binary is $HOTPLANE_BIN (scripts/test.sh passes target/release/hotplane), else the
# newest of target/release/hotplane and target/debug/hotplane. Each server runs in the test's
# own temporary directory on 127.0.0.1:0 with its own embedded SQLite file: no scenario here
# is about storage (the Rust suite covers PostgreSQL), and a file per test is as fresh as a
# database per test while needing no server. The address comes from the JSON log line
# "hotplane listening", as tests/it/binary.rs reads it; stopping is SIGTERM and a wait.
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import threading
from typing import List, Optional

import grpc
import pytest

import hotplane_client as hc

ROOT = pathlib.Path(__file__).resolve().parents[3]
START_TIMEOUT = 60  # seconds for a start to log its address: a deadline, not a measurement


def hotplane_bin() -> str:
    env = os.environ.get("HOTPLANE_BIN")
    if env:
        return str(pathlib.Path(env).resolve())  # the servers run in other directories
    found = [p for p in (ROOT / "target/release/hotplane", ROOT / "target/debug/hotplane") if p.exists()]
    if not found:
        pytest.fail("no hotplane binary: set HOTPLANE_BIN or run cargo build")
    return str(max(found, key=lambda p: p.stat().st_mtime))


class Server:
    """One hotplane process; `restart()` starts another on the same port and database."""

    def __init__(self, workdir: pathlib.Path, args: List[str]):
        self.workdir = workdir
        self.args = args
        self.proc: Optional[subprocess.Popen] = None
        self.addr = ""
        self.log: List[str] = []
        self._start("127.0.0.1:0")

    def _start(self, listen: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPLANE_")}
        env["HOTPLANE_LOG_FORMAT"] = "json"
        cmd = [hotplane_bin(), "--listen", listen,
               "--database-url", f"sqlite://{self.workdir / 'hotplane.db'}", *self.args]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def read(proc=self.proc):
            for line in proc.stderr:  # drained to the end so the child never blocks on a full pipe
                self.log.append(line.rstrip())
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if v.get("message") == "hotplane listening":
                    self.addr = v["addr"]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or not self.addr or self.proc.poll() is not None:
            self.stop()
            pytest.fail("hotplane did not start:\n" + "\n".join(self.log[-30:]))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Stops this process and starts a new one on the same address and SQLite file."""
        addr = self.addr
        self.stop()
        self.addr = ""
        self._start(addr)

    def channel(self, token: Optional[str] = None) -> grpc.Channel:
        return hc.insecure_channel(self.addr, token=token)


@pytest.fixture
def start_server(tmp_path):
    """Starts hotplane with extra flags: start_server("--watch-max-age", "1s")."""
    servers: List[Server] = []

    def start(*args: str) -> Server:
        d = tmp_path / f"server{len(servers)}"
        d.mkdir()
        s = Server(d, list(args))
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def server(start_server) -> Server:
    return start_server()


@pytest.fixture
def patterns(server):
    with server.channel() as ch:
        yield hc.patterns_pb2_grpc.PatternsStub(ch)

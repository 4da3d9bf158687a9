"""cluster.py - a throw-away imgstore cluster for the Python tests.

The same recipe as tests/integ/cluster.c: a temporary folder, free loopback
ports chosen outside the kernel's ephemeral range (a restarted server binds
its port again; a port of that range may meanwhile be some outgoing
connection's), one nameserver and N dataservers from $IMGSTORE_BIN (default
build/bin of this tree), a keys file with one member key per dataserver, an
operator key "ops" and a writer key "app" (all mode 0600), and client key
files writer.key / operator.key. Every server is started with
PR_SET_PDEATHSIG = SIGKILL, so it dies with the test process even when
pytest is killed; :meth:`Cluster.stop` stops everything and removes the
folder (the fixture calls it whatever the outcome), printing the last log
lines of each server when asked to.
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("IMGSTORE_BIN") or os.path.join(ROOT, "build", "bin")
READY_S = 20.0
STOP_S = 5.0
PR_SET_PDEATHSIG = 1


def _ephemeral() -> tuple:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            a, b = (int(x) for x in f.read().split())
            return a, b
    except (OSError, ValueError):
        return 32768, 60999


def pick_ports(n: int) -> List[int]:
    """n distinct free loopback ports outside the ephemeral range."""
    lo, hi = _ephemeral()
    below = max(0, lo - 10000)
    above = 65535 - hi
    socks, ports = [], []
    try:
        for _ in range(n):
            s = None
            for _t in range(200):
                k = random.randrange(below + above)
                port = 10000 + k if k < below else hi + 1 + (k - below)
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", port))
                    break
                except OSError:
                    s.close()
                    s = None
            if s is None:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _write_secret(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Proc:
    """One server process; its ports and folders survive a restart."""

    def __init__(self, name: str, argv: List[str], log: str) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.p: Optional[subprocess.Popen] = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            log.write(("# %s\n" % " ".join(self.argv)).encode())
            log.flush()
            self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                      close_fds=True)

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Cluster:
    """A nameserver and `nds` dataservers on loopback (see the module doc)."""

    def __init__(self, nds: int = 3, replicas: int = 2, heartbeat_timeout_ms: int = 3000,
                 ds_args: Optional[List[str]] = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="imgstore-py.")
        self.nds = nds
        self.replicas = replicas
        os.makedirs(os.path.join(self.dir, "log"))
        ports = pick_ports(1 + 2 * nds)
        self.ns_addr = "127.0.0.1:%d" % ports[0]
        self.keys = os.path.join(self.dir, "keys")
        self.writer_key = os.path.join(self.dir, "writer.key")
        self.operator_key = os.path.join(self.dir, "operator.key")
        self.secrets: Dict[str, str] = {}
        self._write_keys()
        self.ns = Proc("ns", [os.path.join(BIN, "nameserver"), "--listen", self.ns_addr,
                              "--data", os.path.join(self.dir, "ns"), "--replicas", str(replicas),
                              "--heartbeat-timeout-ms", str(heartbeat_timeout_ms),
                              "--keys", self.keys], os.path.join(self.dir, "log", "ns.log"))
        os.makedirs(os.path.join(self.dir, "ns"))
        self.ds: List[Proc] = []
        self.ds_addr: List[str] = []
        self.ds_http: List[str] = []
        for i in range(nds):
            addr = "127.0.0.1:%d" % ports[1 + 2 * i]
            http = "127.0.0.1:%d" % ports[2 + 2 * i]
            data = os.path.join(self.dir, "ds%d" % (i + 1))
            os.makedirs(data)
            argv = [os.path.join(BIN, "dataserver"), "--ns", self.ns_addr, "--listen", addr,
                    "--http", http, "--data", data, "--keys", self.keys,
                    "--member-key", "member%d" % (i + 1)] + list(ds_args or [])
            self.ds.append(Proc("ds%d" % (i + 1), argv,
                                os.path.join(self.dir, "log", "ds%d.log" % (i + 1))))
            self.ds_addr.append(addr)
            self.ds_http.append(http)

    def _write_keys(self) -> None:
        for k in ["ops", "app"] + ["member%d" % i for i in range(1, 9)]:
            self.secrets[k] = secrets.token_hex(32)
        lines = ["# test cluster keys",
                 "operator ops %s" % self.secrets["ops"], "writer app %s" % self.secrets["app"]]
        lines += ["member member%d %s" % (i, self.secrets["member%d" % i]) for i in range(1, 9)]
        _write_secret(self.keys, "\n".join(lines) + "\n")
        _write_secret(self.writer_key, "app %s\n" % self.secrets["app"])
        _write_secret(self.operator_key, "ops %s\n" % self.secrets["ops"])

    def start(self) -> None:
        self.ns.start()
        for d in self.ds:
            d.start()
        self.wait_ready(self.nds)

    def status(self) -> Optional[dict]:
        """`ds-admin --json status`, or None when it fails."""
        try:
            r = subprocess.run([os.path.join(BIN, "ds-admin"), "--ns", self.ns_addr, "--json",
                                "--timeout", "2000", "status"], capture_output=True,
                               timeout=10, env=dict(os.environ, IMGSTORE_KEY_FILE=""))
            return json.loads(r.stdout) if r.stdout.strip() else None
        except (subprocess.TimeoutExpired, ValueError):
            return None

    def wait_ready(self, nup: int, timeout: float = READY_S) -> None:
        """Waits for `nup` servers up and a writable block."""
        end = time.monotonic() + timeout
        st = None
        while time.monotonic() < end:
            for p in [self.ns] + self.ds:
                if p.p is not None and not p.alive() and p not in self._killed:
                    raise RuntimeError("%s exited with %s\n%s" % (p.name, p.p.returncode,
                                                                    self.logs()))
            st = self.status()
            if st and st.get("servers_up", 0) >= nup and st.get("blocks_writable", 0) >= 1:
                return
            time.sleep(0.1)
        raise RuntimeError("cluster not ready in %.0f s (%d up wanted): %r\n%s"
                           % (timeout, nup, st, self.logs()))

    _killed: List[Proc] = []

    def kill_ds(self, i: int) -> None:
        """SIGKILLs dataserver i (0-based)."""
        self._killed = self._killed + [self.ds[i]]
        self.ds[i].kill(signal.SIGKILL)

    def restart_ds(self, i: int) -> None:
        self._killed = [p for p in self._killed if p is not self.ds[i]]
        self.ds[i].start()

    def logs(self, lines: int = 30) -> str:
        out = []
        for p in [self.ns] + self.ds:
            try:
                with open(p.log, "rb") as f:
                    tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
            except OSError:
                tail = []
            out.append("----- last %d lines of %s -----\n%s" % (lines, p.name, "\n".join(tail)))
        return "\n".join(out)

    def stop(self, dump_logs: bool = False) -> None:
        if dump_logs:
            print(self.logs())
        procs = self.ds + [self.ns]
        for p in procs:
            if p.alive():
                p.p.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        end = time.monotonic() + STOP_S
        for p in procs:
            if p.p is None:
                continue
            try:
                p.p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.p.kill()
                p.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

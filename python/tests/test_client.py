"""test_client.py - the imgstore package against a real local cluster
(conftest.py): round trips of every size, every error class, many threads
on one client, close() under load, and a dataserver killed mid-run."""
from __future__ import annotations

import dataclasses
import io
import os
import re
import threading
import time

import pytest

import imgstore
from imgstore import errors
from cluster import ROOT, Cluster
from util import crc32c, jpeg, name_decode, name_encode

MiB = 1 << 20
RECORD_HEADER = 24  # bytes before a record's data (docs/storage.md)

# Every size class a caller meets: one byte, below/at/above a page, a
# thumbnail, a product photo, large, odd, and the library's maximum (an
# empty upload is refused: test_empty_put).
SIZES = [1, 3, 4095, 4096, 4097, 51200, 65537, MiB, 3 * MiB + 7, 8 * MiB + 1, 32 * MiB]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_every_size(client, reader, size):
    data = jpeg(size, seed=size)
    name = client.put(data)
    assert re.fullmatch(r"1[A-Za-z0-9_-]{20}", name), name
    assert reader.get(name) == data
    assert reader.get(name + ".jpg") == data  # the extension is only a hint
    st = reader.stat(name)
    assert dataclasses.is_dataclass(st) and isinstance(st, imgstore.Stat)
    assert st.size == size
    assert st.crc32c == crc32c(data)
    assert st.etag == '"%08x-%x"' % (crc32c(data), size)
    assert len(st.replicas) == 2 and len(set(st.replicas)) == 2
    assert abs(st.created - time.time()) < 120
    assert st.created_at.tzinfo is not None
    if size >= 3:
        assert st.mime == "image/jpeg"  # sniffed from the bytes


def test_empty_put(client):
    """An empty upload is refused before any network traffic
    (IMGSTORE_EINVAL), whatever form the bytes come in."""
    for data in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(imgstore.InvalidArgument) as e:
            client.put(data)
        assert e.value.code == errors.EINVAL


def test_put_inputs(client, tmp_path):
    data = jpeg(70000, seed=7)
    p = tmp_path / "product.jpg"
    p.write_bytes(data)
    names = [
        client.put(data),
        client.put(bytearray(data)),
        client.put(memoryview(data)),
        client.put(memoryview(b"xx" + data)[2:]),  # a view into a larger buffer
        client.put(str(p)),
        client.put(p),  # os.PathLike
        client.put(io.BytesIO(data)),
    ]
    with open(p, "rb") as f:
        names.append(client.put(f))
    assert len(set(names)) == len(names)
    for n in names:
        assert client.get(n) == data
    with pytest.raises(TypeError):
        client.put(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.put(io.StringIO("text"))  # type: ignore[arg-type]


def test_mime(client):
    n = client.put(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert client.stat(n).mime == "image/png"
    n = client.put(b"not an image", mime="image/webp")
    assert client.stat(n).mime == "image/webp"
    with pytest.raises(imgstore.InvalidArgument):
        client.put(b"x", mime="image/\u00e9")


def test_open_file_like(client):
    data = jpeg(300000, seed=3)
    name = client.put(data)
    with client.open(name) as f:
        assert isinstance(f, io.RawIOBase)
        assert f.readable() and f.seekable() and not f.writable()
        assert f.size == len(data) and f.name == name
        assert f.read(10) == data[:10]
        assert f.tell() == 10
        assert f.seek(-5, io.SEEK_END) == len(data) - 5
        assert f.read() == data[-5:]
        assert f.read(1) == b""
        f.seek(1000)
        buf = bytearray(2000)
        assert f.readinto(buf) == 2000 and bytes(buf) == data[1000:3000]
        f.seek(0)
        assert io.BufferedReader(f).read() == data  # (closes f when collected)
    with client.open(name) as f:
        with pytest.raises(ValueError):
            f.seek(-1)
        with pytest.raises(OSError):
            f.write(b"x")
    assert f.closed
    with pytest.raises(ValueError):
        f.read()


def test_delete(client, reader):
    name = client.put(b"to be deleted")
    assert client.delete(name) is True
    assert client.delete(name) is False  # already deleted: no error
    with pytest.raises(imgstore.Deleted) as e:
        reader.get(name)
    assert e.value.code == errors.EDELETED == -1001
    assert isinstance(e.value, imgstore.Error) and isinstance(e.value, LookupError)
    with pytest.raises(imgstore.Deleted):
        reader.stat(name)
    with pytest.raises(imgstore.Deleted):
        reader.open(name)


def test_not_found(client, reader):
    name = client.put(b"exists")
    block, seq, cookie = name_decode(name)
    wrong_cookie = name_encode(block, seq, cookie ^ 1)
    unknown_block = name_encode(block + 100000, 1, 1)
    for n in (wrong_cookie, unknown_block):
        with pytest.raises(imgstore.NotFound) as e:
            reader.get(n)
        assert e.value.code == errors.ENOTFOUND
        assert n in str(e.value) and "not found" in str(e.value)
        with pytest.raises(imgstore.NotFound):
            reader.stat(n)
    with pytest.raises(imgstore.NotFound):
        client.delete(unknown_block)


@pytest.mark.parametrize("bad", ["", "x", "1AAAAAAABAAAAAX2LdmXY", "1AAAAAAABAAAAAX2LdmX",
                                 "2AAAAAAABAAAAAX2LdmXX", "1AAAAAAABAAAAAX2LdmXX.toolongext",
                                 "1AAAAAAABAAAAAX2Ld\u00e9XX", "1AAAAAAABAAAA\0X2LdmXX",
                                 "../../etc/passwd", "A" * 5000])
def test_bad_name(client, bad):
    for call in (client.get, client.stat, client.delete, client.open):
        with pytest.raises(imgstore.BadName) as e:
            call(bad)
        assert e.value.code == errors.EBADNAME
        assert isinstance(e.value, ValueError)
    with pytest.raises(TypeError):
        client.get(b"1AAAAAAABAAAAAX2LdmXX")  # type: ignore[arg-type]


def test_too_big(client, tmp_path):
    with pytest.raises(imgstore.TooBig) as e:
        client.put(b"\0" * (32 * MiB + 1))
    assert e.value.code == errors.ETOOBIG
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(32 * MiB + 1)
    with pytest.raises(imgstore.TooBig):
        client.put(big)

    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self):
            return True

        def readinto(self, b):
            self.read_bytes += len(b)
            return len(b)

    src = Endless()
    with pytest.raises(imgstore.TooBig):
        client.put(io.BufferedReader(src))
    assert src.read_bytes < 34 * MiB  # stopped at the limit, memory bounded


def test_unauthorized(cluster, reader, tmp_path):
    with pytest.raises(imgstore.Unauthorized) as e:
        reader.put(b"no key")
    assert e.value.code == errors.EAUTH and isinstance(e.value, PermissionError)
    with imgstore.Client(cluster.ns_addr, key_file=cluster.writer_key) as w:
        name = w.put(b"keep me")
    with pytest.raises(imgstore.Unauthorized):
        reader.delete(name)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("app %s\n" % ("ab" * 32))
    wrong.chmod(0o600)
    with imgstore.Client(cluster.ns_addr, key_file=wrong) as c:
        with pytest.raises(imgstore.Unauthorized):
            c.put(b"wrong secret")
        assert c.get(name) == b"keep me"  # reads never need a key


def test_key_file_errors(cluster, tmp_path):
    loose = tmp_path / "loose.key"
    loose.write_text(open(cluster.writer_key).read())
    loose.chmod(0o644)
    with pytest.raises(imgstore.KeyFileError) as e:
        imgstore.Client(cluster.ns_addr, key_file=loose)
    assert e.value.code == errors.EKEYFILE
    assert "loose.key" in str(e.value) and "chmod 600" in str(e.value)
    with pytest.raises(imgstore.KeyFileError):
        imgstore.key_file_check(loose)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("app not-hex\n")
    garbage.chmod(0o600)
    with pytest.raises(imgstore.KeyFileError):
        imgstore.key_file_check(garbage)
    with pytest.raises(imgstore.SystemFailure) as e2:
        imgstore.key_file_check(tmp_path / "missing.key")
    assert e2.value.errno == 2 and isinstance(e2.value, OSError)
    imgstore.key_file_check(cluster.writer_key)  # a good one: no error


def test_key_file_from_environment(cluster, monkeypatch):
    monkeypatch.setenv("IMGSTORE_KEY_FILE", cluster.writer_key)
    with imgstore.Client(cluster.ns_addr) as c:
        assert c.get(c.put(b"env key")) == b"env key"


def test_connection_failed_and_timeout(client):
    from cluster import pick_ports

    dead = "127.0.0.1:%d" % pick_ports(1)[0]  # nobody listens there
    with imgstore.Client(dead, timeout=1) as c:
        t = time.monotonic()
        with pytest.raises(imgstore.ConnectionFailed) as e:
            c.put(b"x")
        assert e.value.code == errors.ECONN
        assert isinstance(e.value, ConnectionError) and isinstance(e.value, imgstore.Unavailable)
        assert e.value.errno is None  # our codes are no errno
        with pytest.raises(imgstore.Unavailable):  # ECONN or ETIMEDOUT: both "try later"
            c.get(name_encode(1, 1, 1))
        assert time.monotonic() - t < 5  # the timeout bounds the calls


def test_invalid_arguments(cluster):
    with pytest.raises(imgstore.InvalidArgument) as e:
        imgstore.Client("no port here")
    assert e.value.code == errors.EINVAL
    with pytest.raises(ValueError):
        imgstore.Client("%s,%s" % (cluster.ns_addr, cluster.ns_addr))
    with pytest.raises(ValueError):
        imgstore.Client(cluster.ns_addr, timeout=0)
    with pytest.raises(ValueError):
        imgstore.Client(cluster.ns_addr, timeout=-1)


def test_default_ns_from_environment(cluster, monkeypatch):
    monkeypatch.setenv("IMGSTORE_NS", cluster.ns_addr)
    with imgstore.Client(key_file=cluster.writer_key) as c:
        assert c.ns == cluster.ns_addr
        assert c.get(c.put(b"ns from env")) == b"ns from env"


def _codes(path, prefix):
    text = open(os.path.join(ROOT, path)).read()
    return {int(v): n for n, v in re.findall(r"\b%s(E[A-Z]+)\s*=?\s*\(?(-\d+)" % prefix, text)}


def test_every_code_has_a_class():
    server = _codes("base/err.h", "IMG_")
    public = _codes("client/imgstore.h", "IMGSTORE_")
    assert len(server) >= 30 and len(public) >= 15
    assert set(public) <= set(server)
    assert set(errors.CODES) == set(server), "base/err.h and imgstore.errors.CODES differ"
    for code, cls in errors.CODES.items():
        e = errors.from_code(code)
        assert type(e) is cls and e.code == code and isinstance(e, imgstore.Error)
        assert e.message and e.message != "unknown error", (code, e.message)
    expect = {"ENOTFOUND": imgstore.NotFound, "EDELETED": imgstore.Deleted,
              "EBADNAME": imgstore.BadName, "ETOOBIG": imgstore.TooBig,
              "EUNAVAIL": imgstore.Unavailable, "ETIMEDOUT": imgstore.Timeout,
              "ECONN": imgstore.ConnectionFailed, "EINVAL": imgstore.InvalidArgument,
              "EAUTH": imgstore.Unauthorized, "EPERM": imgstore.Forbidden,
              "EKEYFILE": imgstore.KeyFileError, "ECORRUPT": imgstore.Corrupt,
              "EPROTO": imgstore.ProtocolError, "ENOBLOCK": imgstore.NoBlock,
              "EBUSY": imgstore.Busy, "ENOTLEADER": imgstore.NotLeader}
    for code, name in public.items():
        assert errors.CODES[code] is expect[name], name
    e = errors.from_code(-110)  # an errno: ETIMEDOUT of the system
    assert isinstance(e, imgstore.SystemFailure) and e.errno == 110


def test_sixteen_threads(cluster, client):
    """16 threads share one client: uploads, reads, stats and deletes of
    their own files, all at once; every result checked."""
    failures = []
    start = threading.Barrier(16)

    def work(t):
        try:
            start.wait()
            mine = []
            for i in range(25):
                data = jpeg(1000 + 997 * ((t * 25 + i) % 60), seed=t * 1000 + i)
                mine.append((client.put(data), data))
            for name, data in mine:
                assert client.get(name) == data
                assert client.stat(name).crc32c == crc32c(data)
            for name, _ in mine[::5]:
                assert client.delete(name) is True
            for name, data in mine[1::5]:
                assert client.get(name) == data
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append((t, repr(e)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads)
    assert failures == []


def test_close_waits_for_running_calls(cluster):
    c = imgstore.Client(cluster.ns_addr, key_file=cluster.writer_key)
    name = c.put(jpeg(200000, seed=1))
    results = {"ok": 0, "closed": 0, "other": []}

    def reader():
        while True:  # until the client is closed
            try:
                c.get(name)
                results["ok"] += 1
            except ValueError:
                results["closed"] += 1
                return
            except Exception as e:  # noqa: BLE001
                results["other"].append(repr(e))
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for th in threads:
        th.start()
    time.sleep(0.3)
    c.close()  # must not free the handle under a running call
    assert c.closed
    for th in threads:
        th.join(10)
    assert results["other"] == [] and results["ok"] > 0 and results["closed"] == 4
    c.close()  # idempotent
    with pytest.raises(ValueError):
        c.put(b"x")


def test_dataserver_killed_mid_run():
    """8 threads upload and read while one of three dataservers is killed
    with SIGKILL: every call succeeds, files written before stay readable."""
    cl = Cluster(nds=3, replicas=2, heartbeat_timeout_ms=2000)
    failed = True
    try:
        cl.start()
        with imgstore.Client(cl.ns_addr, timeout=15, key_file=cl.writer_key) as c:
            before = [(c.put(jpeg(20000 + i, seed=i)), jpeg(20000 + i, seed=i)) for i in range(60)]
            stop = threading.Event()
            errs = []
            counts = [0] * 8

            def work(t):
                i = 0
                while not stop.is_set():
                    try:
                        data = jpeg(5000 + t * 100 + i, seed=t * 100000 + i)
                        name = c.put(data)
                        assert c.get(name) == data
                        old, odata = before[(t * 7 + i) % len(before)]
                        assert c.get(old) == odata
                        counts[t] += 1
                    except Exception as e:  # noqa: BLE001
                        errs.append(repr(e))
                    i += 1

            threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            for th in threads:
                th.start()
            time.sleep(1.0)
            at_kill = sum(counts)
            cl.kill_ds(1)
            time.sleep(4.0)  # past the nameserver's heartbeat timeout
            stop.set()
            for th in threads:
                th.join(60)
            assert errs == [], errs[:5]
            assert sum(counts) > at_kill + 8, (at_kill, counts)  # calls went on after the kill
            for name, data in before:
                assert c.get(name) == data
        failed = False
    finally:
        cl.stop(dump_logs=failed)


def test_corrupt(cluster, client):
    """Both copies of a record damaged on disk: the read fails its checksum
    everywhere and ends, at its deadline, with Corrupt."""
    data = jpeg(10000, seed=99)
    name = client.put(data)
    st = client.stat(name)
    for addr in st.replicas:
        i = cluster.ds_addr.index(addr)
        path = os.path.join(cluster.dir, "ds%d" % (i + 1), "blocks", "%016x.blk" % st.block_id)
        with open(path, "r+b") as f:
            at = st.offset + RECORD_HEADER + 5000
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x40]))
    with imgstore.Client(cluster.ns_addr, timeout=2) as c:
        with pytest.raises(imgstore.Corrupt) as e:
            c.get(name)
    assert e.value.code == errors.ECORRUPT


def test_no_writable_block(cluster):
    """Every dataserver read-only: no block takes a new file, so a put goes
    round until its deadline and ends with NoBlock (an Unavailable)."""
    import json
    import subprocess

    from cluster import BIN

    def admin(*args):
        r = subprocess.run([os.path.join(BIN, "ds-admin"), "--ns", cluster.ns_addr,
                            "--key-file", cluster.operator_key] + list(args),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    ids = [s["id"] for s in json.loads(admin("--json", "servers"))]
    assert len(ids) == 3
    try:
        for i in ids:
            admin("readonly", i, "on")
        with imgstore.Client(cluster.ns_addr, timeout=2, key_file=cluster.writer_key) as c:
            with pytest.raises(imgstore.NoBlock) as e:
                c.put(b"nowhere to go")
        assert e.value.code == errors.ENOBLOCK and isinstance(e.value, imgstore.Unavailable)
    finally:
        for i in ids:
            admin("readonly", i, "off")
    with imgstore.Client(cluster.ns_addr, timeout=10, key_file=cluster.writer_key) as c:
        assert c.get(c.put(b"writable again")) == b"writable again"


def test_get_from(cluster, client):
    data = jpeg(12345, seed=5)
    name = client.put(data)
    holders = client.stat(name).replicas
    for addr in holders:
        assert client.get_from(name, addr) == data
    other = [a for a in cluster.ds_addr if a not in holders][0]
    with pytest.raises(imgstore.ServerError) as e:
        client.get_from(name, other)  # no copy there, and no retry elsewhere
    assert e.value.code == -1011 and other in str(e.value)  # IMG_ENOBLOCKHERE
    with pytest.raises(imgstore.InvalidArgument):
        client.get_from(name, "not an address")


def test_nameserver_list(cluster):
    """A list of nameservers whose first one is dead: the library goes on
    to the next (docs/client.md); uploads and reads work through it."""
    with imgstore.Client("127.0.0.1:1," + cluster.ns_addr, timeout=10,
                         key_file=cluster.writer_key) as c:
        name = c.put(b"\x89PNG\r\n\x1a\n" + b"list" * 100)
        assert c.get(name) == b"\x89PNG\r\n\x1a\n" + b"list" * 100


def test_gil_released_during_calls():
    """8 threads share one client whose nameserver accepts connections but
    never answers, so each call sits in C until its 2 s deadline. With the
    GIL released around the C calls they wait in parallel (about 2 s in all,
    not 16) and this thread keeps running Python meanwhile (no pause as long
    as a call). A binding that held the GIL (ctypes.PyDLL) fails both."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # the kernel completes the handshakes; nobody reads
    addr = "127.0.0.1:%d" % silent.getsockname()[1]
    results = []
    try:
        with imgstore.Client(addr, timeout=2, io_timeout=2) as c:
            def call():
                t = time.monotonic()
                try:
                    c.get(name_encode(1, 1, 1))
                    results.append(("returned", 0.0))
                except imgstore.Unavailable as e:
                    results.append((type(e).__name__, time.monotonic() - t))

            threads = [threading.Thread(target=call) for _ in range(8)]
            t0 = time.monotonic()
            for th in threads:
                th.start()
            last, gap = time.monotonic(), 0.0
            while any(th.is_alive() for th in threads) and time.monotonic() - t0 < 60:
                time.sleep(0.002)  # gives the GIL up and takes it back
                now = time.monotonic()
                gap, last = max(gap, now - last), now
            for th in threads:
                th.join(10)
            total = time.monotonic() - t0
    finally:
        silent.close()
    # Each call ended at its deadline: Timeout (IMGSTORE_ETIMEDOUT), an Unavailable.
    assert len(results) == 8 and all(r[0] == "Timeout" for r in results), results
    assert min(r[1] for r in results) >= 1.5, results  # each call did wait in C
    assert total < 8.0, (total, results)  # in parallel: not 8 x 2 s
    assert gap < 1.0, gap  # this thread was never held up for a whole call


def _wait_for(check, seconds=10.0):
    """Calls check() until it returns True (servers re-read the keys file
    every second); returns its last result."""
    end = time.monotonic() + seconds
    while True:
        ok = check()
        if ok or time.monotonic() > end:
            return ok
        time.sleep(0.2)


def _all_reread():
    """Once one server answers by the new keys file, the others re-read it
    within their next one-second check: waits that out (a write of the next
    call may go to another server, e.g. the primary of another block)."""
    time.sleep(1.5)


def test_key_roles_and_revocation(cluster, reader, tmp_path):
    """Keys for writes: roles nest (operator and member keys may upload and
    delete too), a client key file may hold the keys file's `ROLE NAME
    SECRET` line, and a writer key removed from the servers' keys file is
    refused (Unauthorized) on the same client's pooled connections, while
    its reads go on."""
    from cluster import _write_secret

    for role, name in (("operator", "ops"), ("member", "member1")):
        kf = tmp_path / ("%s.key" % role)
        _write_secret(str(kf), "%s %s %s\n" % (role, name, cluster.secrets[name]))
        with imgstore.Client(cluster.ns_addr, timeout=10, key_file=kf) as c:
            n = c.put(b"written with a %s key" % role.encode())
            assert reader.get(n) == b"written with a %s key" % role.encode()
            assert c.delete(n) is True

    original = open(cluster.keys).read()
    secret = "cd" * 32
    kf = tmp_path / "app2.key"
    _write_secret(str(kf), "app2 %s\n" % secret)

    def rewrite(text):
        tmp = cluster.keys + ".new"
        _write_secret(tmp, text)
        os.replace(tmp, cluster.keys)

    try:
        rewrite(original + "writer app2 %s\n" % secret)
        with imgstore.Client(cluster.ns_addr, timeout=3, key_file=kf) as c:
            def accepted():
                try:
                    return c.put(b"app2 was added")
                except imgstore.Unauthorized:
                    return None

            name = _wait_for(accepted)
            assert name, "the added key was never accepted"
            _all_reread()
            assert c.get(c.put(b"pooled")) == b"pooled"  # connections now in the pool
            rewrite(original)  # app2 revoked

            def refused():
                try:
                    c.put(b"after the revocation")
                    return False
                except imgstore.Unauthorized as e:
                    assert e.code == errors.EAUTH
                    return True

            assert _wait_for(refused), "the revoked key still uploads"
            _all_reread()
            with pytest.raises(imgstore.Unauthorized):
                c.delete(name)
            assert c.get(name) == b"app2 was added"  # reads need no key
        with imgstore.Client(cluster.ns_addr, timeout=3, key_file=kf) as c2:
            with pytest.raises(imgstore.Unauthorized):
                c2.put(b"a new client with the revoked key")
    finally:
        rewrite(original)
    with imgstore.Client(cluster.ns_addr, timeout=10, key_file=cluster.writer_key) as w:
        assert w.get(w.put(b"app unaffected")) == b"app unaffected"


def test_public_api_documented_and_typed():
    """Every public name of the package has a docstring; every public
    function and method (also properties) has one and annotates each
    parameter and its return type (mypy --strict in make test-python checks
    that the annotations are right)."""
    import inspect

    missing = []
    for name in imgstore.__all__:
        obj = getattr(imgstore, name)
        if isinstance(obj, (int, str)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        members = []
        if inspect.isclass(obj) and obj.__module__.startswith("imgstore"):
            for k, v in vars(obj).items():
                if k.startswith("_") and k != "__init__":
                    continue
                members.append(("%s.%s" % (name, k), v))
        elif inspect.isfunction(obj):
            members.append((name, obj))
        for what, v in members:
            fn = v.fget if isinstance(v, property) else v
            if not inspect.isfunction(fn):
                continue
            if fn.__name__ != "__init__" and not (fn.__doc__ or "").strip():
                missing.append(what + " (docstring)")
            sig = inspect.signature(fn)
            for p in list(sig.parameters.values())[1 if "." in what else 0:]:
                if p.annotation is inspect.Parameter.empty:
                    missing.append("%s(%s) (annotation)" % (what, p.name))
            if sig.return_annotation is inspect.Signature.empty:
                missing.append(what + " (return annotation)")
    assert missing == [], missing


def test_protocol_error_from_a_hostile_server():
    """A "nameserver" that answers every connection with bytes that are no
    frame (an HTTP answer and junk): the calls fail at once with
    ProtocolError (IMGSTORE_EPROTO), not at the deadline, and no crash."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    addr = "127.0.0.1:%d" % srv.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return  # closed: the test is over
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"\xff" * 100)
            except OSError:
                pass
            conn.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with imgstore.Client(addr, timeout=5) as c:
            for call in (c.get, c.stat, c.open):
                t = time.monotonic()
                with pytest.raises(imgstore.ProtocolError) as e:
                    call(name_encode(1, 1, 1))
                assert e.value.code == errors.EPROTO
                assert time.monotonic() - t < 2.5  # refused at once, not at the 5 s deadline
    finally:
        try:
            srv.shutdown(socket.SHUT_RDWR)  # wakes the accept() of serve
        except OSError:
            pass
        srv.close()
        th.join(5)

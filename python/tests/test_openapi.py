"""test_openapi.py - docs/openapi.yaml against the running HTTP origin.

First the document itself: parsed with PyYAML, every $ref resolves, every
operation has responses with descriptions and valid status codes. Then a
cluster of its own (3 dataservers with small limits: a 1 s header timeout,
a 1 MiB receive budget, 4 MiB uploads, 404 buckets of 3 for every address
but 127.0.0.1) and one stand-alone dataserver started --insecure without a
nameserver (uploads off: 403; never ready: 503). Every request goes through
`call`, which checks the answer against the document: the status is listed
under the operation, each required header is there, no header is there
that the document does not list (beyond Date, Server, Connection,
Content-Length, Content-Type), the Content-Type is one of the listed media
types, and a response listed without content has an empty body. The last
test asserts that every status code the document lists for every
operation was produced by some request.

No Debian package validates OpenAPI documents (Debian 12 has no
openapi-spec-validator), so the structural check here is our own.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
import time
from typing import Dict, Optional, Set, Tuple

import pytest
import yaml

import imgstore
from cluster import BIN, ROOT, Cluster, Proc, pick_ports
from util import jpeg, name_decode, name_encode

SPEC_PATH = os.path.join(ROOT, "docs", "openapi.yaml")
METHODS = ("get", "head", "post", "put", "delete", "patch", "options", "trace")
ALWAYS = {"date", "server", "connection", "content-length", "content-type"}

seen: Set[Tuple[str, str, str]] = set()  # (path template, method, status)


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        cur = spec
        for part in ref[2:].split("/"):
            cur = cur[part]
        node = cur
    return node


# ---- the document ---------------------------------------------------------

def test_document_structure(spec):
    assert str(spec["openapi"]).startswith("3.0.")
    assert spec["info"]["title"] and spec["info"]["version"]
    refs = []

    def walk(n):
        if isinstance(n, dict):
            if "$ref" in n:
                refs.append(n["$ref"])
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(spec)
    assert refs
    for r in refs:
        assert resolve(spec, {"$ref": r}) is not None, r
    ops = 0
    for path, item in spec["paths"].items():
        assert path.startswith("/")
        for p in re.findall(r"{(\w+)}", path):
            params = [resolve(spec, x) for x in item.get("parameters", [])]
            assert any(x["name"] == p and x["in"] == "path" and x["required"] for x in params), p
        for m, op in item.items():
            if m == "parameters":
                continue
            assert m in METHODS, (path, m)
            assert op.get("operationId") and op.get("responses"), (path, m)
            ops += 1
            for code, resp in op["responses"].items():
                assert re.fullmatch(r"[1-5][0-9][0-9]", str(code)), (path, m, code)
                resp = resolve(spec, resp)
                assert resp.get("description"), (path, m, code)
                for h in resp.get("headers", {}).values():
                    assert "schema" in resolve(spec, h)
            for s in op.get("security", []):
                for name in s:
                    assert name in spec["components"]["securitySchemes"]
    assert ops >= 14
    names = re.compile(spec["components"]["parameters"]["Name"]["schema"]["pattern"])
    assert names.match("1AAAAAAABAAAAAX2LdmXX.jpg") and not names.match("x")


# ---- requests, each checked against the document ---------------------------

def _template(spec, target: str) -> str:
    path = target.split("?")[0]
    if path in spec["paths"]:
        return path
    return "/{name}"


def check(spec, tmpl: str, method: str, status: int, headers: Dict[str, str], body: bytes):
    op = spec["paths"][tmpl].get(method.lower())
    assert op is not None, "%s %s is not in the document" % (method, tmpl)
    resp = op["responses"].get(str(status))
    assert resp is not None, "%s %s answered %d, not in the document" % (method, tmpl, status)
    resp = resolve(spec, resp)
    documented = {k.lower(): resolve(spec, v) for k, v in resp.get("headers", {}).items()}
    for k, h in documented.items():
        if h.get("required"):
            assert k in headers, "%s %s %d lacks %s: %r" % (method, tmpl, status, k, headers)
        if k in headers and "enum" in h["schema"]:
            assert headers[k] in h["schema"]["enum"], (k, headers[k])
        if k in headers and "pattern" in h["schema"]:
            assert re.search(h["schema"]["pattern"], headers[k]), (k, headers[k])
        if k in headers and h["schema"].get("type") == "integer":
            assert int(headers[k]) >= h["schema"].get("minimum", 0), (k, headers[k])
    extra = set(headers) - set(documented) - ALWAYS
    assert not extra, "%s %s %d: undocumented headers %s" % (method, tmpl, status, extra)
    content = resp.get("content")
    if content:
        ctype = headers.get("content-type", "").split(";")[0].strip()
        assert ctype in content or "*/*" in content, \
            "%s %s %d: Content-Type %r not documented" % (method, tmpl, status, ctype)
        schema = resolve(spec, content.get(ctype, {}).get("schema", {}))
        if ctype == "application/json" and schema.get("type") == "object" and body:
            doc = json.loads(body)
            for k in schema.get("required", []):
                assert k in doc
            if schema.get("additionalProperties") is False:
                assert set(doc) <= set(schema["properties"])
    else:
        assert body == b"", "%s %s %d: a body where none is documented" % (method, tmpl, status)
    seen.add((tmpl, method.lower(), str(status)))


def raw(addr: str, data: bytes, method: str = "GET", source: Optional[str] = None,
        timeout: float = 15.0, pause: Optional[float] = None):
    """Sends `data` on a new connection and parses one answer.
    Returns (status, {lower-case header: value}, body)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    try:
        s.sendall(data)
        if pause:
            time.sleep(pause)
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        body = r.read()
        hdrs = {}
        for k, v in r.getheaders():
            assert k.lower() not in hdrs, "header %s twice" % k
            hdrs[k.lower()] = v
        return r.status, hdrs, body
    finally:
        s.close()


class Origin:
    def __init__(self, spec, cl: Cluster, lone_http: str, writer_secret: str) -> None:
        self.spec = spec
        self.cl = cl
        self.lone = lone_http
        self.secret = writer_secret

    def call(self, method: str, target: str, headers: Optional[Dict[str, str]] = None,
             body: bytes = b"", addr: Optional[str] = None, source: Optional[str] = None,
             raw_bytes: Optional[bytes] = None, tmpl: Optional[str] = None, **kw):
        addr = addr or self.cl.ds_http[0]
        if raw_bytes is None:
            h = {"Host": addr}
            h.update(headers or {})
            if body or method in ("POST", "PUT"):
                h.setdefault("Content-Length", str(len(body)))
            raw_bytes = ("%s %s HTTP/1.1\r\n" % (method, target)).encode() + b"".join(
                ("%s: %s\r\n" % (k, v)).encode() for k, v in h.items()) + b"\r\n" + body
        st, hd, b = raw(addr, raw_bytes, method=method, source=source, **kw)
        check(self.spec, tmpl or _template(self.spec, target), method, st, hd, b)
        return st, hd, b

    def auth(self) -> Dict[str, str]:
        return {"Authorization": "Bearer %s" % self.secret}


@pytest.fixture(scope="module")
def origin(spec):
    cl = Cluster(nds=3, replicas=2, heartbeat_timeout_ms=2000, ds_args=[
        "--http-header-timeout-ms", "1000", "--max-receive-mb", "1",
        "--max-upload-bytes", str(4 << 20), "--miss-rate", "1", "--miss-burst", "3",
        "--miss-exempt", "127.0.0.1"])
    ports = pick_ports(3)
    lone_dir = os.path.join(cl.dir, "lone")
    os.makedirs(lone_dir)
    lone_http = "127.0.0.1:%d" % ports[1]
    lone = Proc("lone", [os.path.join(BIN, "dataserver"), "--ns", "127.0.0.1:%d" % ports[2],
                         "--listen", "127.0.0.1:%d" % ports[0], "--http", lone_http,
                         "--data", lone_dir, "--insecure"],
                os.path.join(cl.dir, "log", "lone.log"))
    failed = True
    try:
        cl.start()
        lone.start()
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports[1]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < end and lone.alive(), "stand-alone dataserver down"
                time.sleep(0.05)
        yield Origin(spec, cl, lone_http, cl.secrets["app"])
        failed = False
    finally:
        lone.kill(15)
        cl.stop(dump_logs=failed)


@pytest.fixture(scope="module")
def stored(origin):
    """A JPEG uploaded through the origin: (name, bytes)."""
    data = jpeg(30000, seed=11)
    st, hd, b = origin.call("POST", "/", origin.auth(), data)
    assert st == 201, b
    return json.loads(b)["name"], data


def test_upload(origin):
    for m in ("POST", "PUT"):
        data = jpeg(5000, seed=len(m))
        st, hd, b = origin.call(m, "/", dict(origin.auth(), **{"Content-Type": "image/jpeg"}), data)
        assert st == 201, b
        doc = json.loads(b)
        assert hd["location"] == "/" + doc["name"] and doc["size"] == len(data)
        assert hd["etag"] == doc["etag"]
        st, hd, b = origin.call("GET", "/" + doc["name"])
        assert st == 200 and b == data and hd["content-type"] == "image/jpeg"


def test_upload_refused(origin):
    for m in ("POST", "PUT"):
        st, hd, _ = origin.call(m, "/", {}, b"x")
        assert st == 401 and hd["www-authenticate"] == 'Bearer realm="imgstore"'
        st, hd, _ = origin.call(m, "/", {"Authorization": "Bearer " + "ab" * 32}, b"x")
        assert st == 401 and 'error="invalid_token"' in hd["www-authenticate"]
        st, hd, _ = origin.call(m, "/", origin.auth(), raw_bytes=(
            "%s / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
            % (m, origin.secret, 8 << 20)).encode())
        assert st == 413
        # Within --max-upload-bytes (4 MiB) but past the 1 MiB receive budget
        # while another upload is being received (the budget admits one
        # body of any size when nothing else is reserved).
        host, port = origin.cl.ds_http[0].rsplit(":", 1)
        slow = socket.create_connection((host, int(port)), timeout=10)
        try:
            slow.sendall(("POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                          "Content-Length: %d\r\n\r\n" % (origin.secret, 3 << 20)).encode()
                         + b"\xff" * 1000)
            time.sleep(0.2)
            st, hd, _ = origin.call(m, "/", origin.auth(), raw_bytes=(
                "%s / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d"
                "\r\n\r\n" % (m, origin.secret, 2 << 20)).encode())
            assert st == 503 and hd["retry-after"] == "1"
        finally:
            slow.close()
        # An empty body: nothing to store (after the key was accepted).
        st, _, b = origin.call(m, "/", origin.auth(), b"")
        assert st == 400 and b == b"empty body: nothing to store\n"
        # Uploads off: a server started --insecure without an upload token.
        st, _, _ = origin.call(m, "/", origin.auth(), b"x", addr=origin.lone)
        assert st == 403


def test_reads(origin, stored):
    name, data = stored
    st, hd, b = origin.call("GET", "/" + name)
    assert st == 200 and b == data and int(hd["content-length"]) == len(data)
    etag, lm = hd["etag"], hd["last-modified"]
    st, hd2, b = origin.call("HEAD", "/" + name + ".jpg")
    assert st == 200 and b == b"" and hd2["etag"] == etag
    for m in ("GET", "HEAD"):
        st, hd, b = origin.call(m, "/" + name, {"If-None-Match": etag})
        assert st == 304 and hd["etag"] == etag
        st, _, _ = origin.call(m, "/" + name, {"If-Modified-Since": lm})
        assert st == 304
        st, hd, b = origin.call(m, "/" + name, {"Range": "bytes=10-19"})
        assert st == 206 and hd["content-range"] == "bytes 10-19/%d" % len(data)
        if m == "GET":
            assert b == data[10:20]
        st, hd, b = origin.call(m, "/" + name, {"Range": "bytes=%d-" % (len(data) + 5)})
        assert st == 416 and hd["content-range"] == "bytes */%d" % len(data)
        st, _, b = origin.call(m, "/" + name, {"Range": "bytes=0-1,5-6"})
        assert st == 200  # several ranges: the whole file
        st, _, _ = origin.call(m, "/" + name, {"Range": "bytes=0-9", "If-Range": '"00000000-1"'})
        assert st == 200


def test_read_errors(origin, stored):
    name, _ = stored
    block, seq, cookie = name_decode(name)
    for m in ("GET", "HEAD"):
        st, hd, _ = origin.call(m, "/" + name_encode(block, seq, cookie ^ 1))
        assert st == 404
        st, hd, _ = origin.call(m, "/not-a-name")
        assert st == 400 and hd["cache-control"] == "public, max-age=10"
    st, _, _ = origin.call("GET", "/")
    assert st == 404
    for m in ("POST", "PUT"):
        st, hd, _ = origin.call(m, "/" + name, {}, b"x")
        assert st == 405 and hd["allow"] == "GET, HEAD, DELETE"
    st, hd, _ = origin.call("DELETE", "/", origin.auth())
    assert st == 405 and "POST" in hd["allow"]


def test_delete(origin):
    st, _, b = origin.call("POST", "/", origin.auth(), b"delete me")
    name = json.loads(b)["name"]
    st, hd, _ = origin.call("DELETE", "/" + name)
    assert st == 401
    st, _, _ = origin.call("DELETE", "/" + name, origin.auth())
    assert st == 204
    st, _, _ = origin.call("DELETE", "/" + name, origin.auth())
    assert st == 204  # again: still success
    for m in ("GET", "HEAD"):
        st, hd, _ = origin.call(m, "/" + name)
        assert st == 410 and hd["cache-control"] == "public, max-age=600"
    block, _, _ = name_decode(name)
    st, _, _ = origin.call("DELETE", "/" + name_encode(block, 999999, 1), origin.auth())
    assert st == 404
    st, _, _ = origin.call("DELETE", "/bad-name", origin.auth())
    assert st == 400
    st, _, _ = origin.call("DELETE", "/" + name, origin.auth(), addr=origin.lone)
    assert st == 403


def test_service_routes(origin):
    for m in ("GET", "HEAD"):
        st, _, b = origin.call(m, "/healthz")
        assert st == 200 and b == (b"ok\n" if m == "GET" else b"")
    st, hd, _ = origin.call("POST", "/healthz", {}, b"")
    assert st == 405 and hd["allow"] == "GET, HEAD"
    for m in ("GET", "HEAD"):
        st, _, b = origin.call(m, "/readyz")
        assert st == 200 and b == (b"ready\n" if m == "GET" else b"")
        st, hd, _ = origin.call(m, "/readyz", addr=origin.lone)  # no nameserver: never ready
        assert st == 503
        st, hd, b = origin.call(m, "/metrics")
        assert st == 200 and (b"imgstore_" in b if m == "GET" else b == b"")
        assert int(hd["content-length"]) > 100  # HEAD: the length of the GET's body


def test_request_refusals(origin, stored):
    name, _ = stored
    st, _, _ = origin.call("GET", "/" + name, raw_bytes=("GET /%s HTTP/1.1\r\nHost: x\r\n"
                                                         % ("a" * 3000)).encode())
    assert st == 414
    big = "".join("X-Pad-%d: %s\r\n" % (i, "v" * 100) for i in range(100))
    st, _, _ = origin.call("GET", "/" + name, raw_bytes=("GET /%s HTTP/1.1\r\nHost: x\r\n%s\r\n"
                                                         % (name, big)).encode())
    assert st == 431
    st, _, _ = origin.call("GET", "/" + name,
                           raw_bytes=("GET /%s HTTP/2.0\r\nHost: x\r\n\r\n" % name).encode())
    assert st == 505
    t = time.monotonic()
    st, _, _ = origin.call("GET", "/" + name,
                           raw_bytes=("GET /%s HTTP/1.1\r\nHost: x\r\n" % name).encode())
    assert st == 408 and 0.5 < time.monotonic() - t < 10


def test_miss_bucket(origin, stored):
    """404s from 127.0.0.2 spend its bucket of 3; then hits wait too (429).
    127.0.0.1 is exempt (--miss-exempt), so the other tests are never slowed."""
    name, _ = stored
    block, seq, cookie = name_decode(name)
    miss = "/" + name_encode(block, seq, cookie ^ 2)
    statuses = [origin.call("GET", miss, source="127.0.0.2")[0] for _ in range(3)]
    assert statuses == [404, 404, 404], statuses
    # The bucket refills at 1 token a second: on a slow machine a token may
    # be back between two requests, so spend it again until the hit waits.
    for m in ("GET", "HEAD"):
        for _ in range(10):
            spent = [origin.call("GET", miss, source="127.0.0.2")[0] for _ in range(5)]
            assert 429 in spent, spent
            st, hd, _ = origin.call(m, "/" + name, source="127.0.0.2")
            if st == 429:
                break
        assert st == 429 and int(hd["retry-after"]) >= 1
    st, _, _ = origin.call("GET", "/" + name)
    assert st == 200


def test_unavailable(origin):
    """Both holders of a file killed: a read through the third server goes
    round until its 8 s deadline and answers 503; so does a delete."""
    cl = origin.cl
    with imgstore.Client(cl.ns_addr, key_file=cl.writer_key) as c:
        name = c.put(b"soon unreachable")
        holders = c.stat(name).replicas
    idx = [cl.ds_addr.index(a) for a in holders]
    other = [i for i in range(cl.nds) if i not in idx][0]
    for i in idx:
        cl.kill_ds(i)
    addr = cl.ds_http[other]
    results = {}

    def one(m, hdrs):
        results[m] = origin.call(m, "/" + name, hdrs, addr=addr, timeout=30)[0]

    threads = [threading.Thread(target=one, args=(m, h)) for m, h in
               (("GET", {}), ("HEAD", {}), ("DELETE", origin.auth()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert results == {"GET": 503, "HEAD": 503, "DELETE": 503}, results


def test_every_documented_status_was_produced(spec):
    documented = set()
    for path, item in spec["paths"].items():
        for m, op in item.items():
            if m in METHODS:
                for code in op["responses"]:
                    documented.add((path, m, str(code)))
    missing = sorted(documented - seen)
    assert not missing, "documented but never produced: %s" % missing

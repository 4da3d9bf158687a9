"""client.py - :class:`Client`, the Python face of one libimgstore handle.

A Client owns one C handle (``imgstore_open``) for its life. The handle is
thread-safe (client/imgstore.h: its pool and caches lock themselves), and
ctypes releases the GIL for the length of every C call, so any number of
Python threads may share one Client and their calls run in parallel.
What the Client adds around the handle is a count of the calls in flight:
:meth:`Client.close` marks the client closed (new calls raise
:class:`ValueError`), waits for the running calls to return, and only then
frees the handle, because the C library forbids closing a handle a call is
still using.

Ownership: buffers passed to :meth:`Client.put` are borrowed for the call;
:meth:`Client.get` copies the library's buffer into ``bytes`` and frees it
at once (``imgstore_free``), so no C memory outlives a call.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import io
import os
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional, Tuple, Union, cast

from . import _lib
from .errors import EBADNAME, EINVAL, ETOOBIG, Error, from_code

PUT_MAX_BYTES = 32 << 20  # the largest file the library stores
DEFAULT_NS = "127.0.0.1:7400"

Data = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]


@dataclass(frozen=True)
class Stat:
    """What :meth:`Client.stat` reports about one stored file."""

    name: str  #: the name as asked (with or without ".ext")
    size: int  #: bytes
    mime: str  #: stored type, e.g. "image/jpeg"
    crc32c: int  #: CRC32C of the bytes
    created: int  #: unix seconds (UTC) of the upload
    block_id: int  #: block holding the file
    seq: int  #: the file's sequence number in its block
    offset: int  #: byte offset of its record in the block file
    replicas: Tuple[str, ...]  #: native HOST:PORT of each copy

    @property
    def created_at(self) -> _dt.datetime:
        """:attr:`created` as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.created, _dt.timezone.utc)

    @property
    def etag(self) -> str:
        """The ``ETag`` the HTTP origin sends for this file (quotes included)."""
        return '"%08x-%x"' % (self.crc32c, self.size)


class ImageFile(io.RawIOBase):
    """A read-only, seekable binary file over one stored image.

    :meth:`Client.open` fetches the whole file when it is opened (the C
    library reads whole files only; files are at most 32 MiB), so reads and
    seeks never go to the network and never fail after the open."""

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__()
        self.name = name
        self._data = memoryview(data)
        self._pos = 0

    @property
    def size(self) -> int:
        """Length of the file in bytes."""
        return len(self._data)

    def readable(self) -> bool:
        """True: the file can be read."""
        return True

    def seekable(self) -> bool:
        """True: any position can be sought (the bytes are in memory)."""
        return True

    def writable(self) -> bool:
        """False: stored files never change."""
        return False

    def write(self, b: Any) -> int:
        """Raises :class:`io.UnsupportedOperation`: the file is read-only."""
        raise io.UnsupportedOperation("write: an imgstore file is read-only")

    def readinto(self, b: Any) -> int:
        """Copies up to ``len(b)`` bytes from the position into the writable
        buffer ``b``; returns how many (0 at the end)."""
        self._checkClosed()
        n = min(len(b), max(0, len(self._data) - self._pos))
        if n <= 0:
            return 0
        memoryview(b).cast("B")[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n

    def readall(self) -> bytes:
        """The bytes from the position to the end (the position moves there)."""
        self._checkClosed()
        out = bytes(self._data[self._pos:])
        self._pos = len(self._data)
        return out

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Moves the position (``whence``: :data:`io.SEEK_SET`, ``SEEK_CUR``,
        ``SEEK_END``; past the end is allowed, reads there return nothing);
        returns the new position. A negative position raises ValueError."""
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = len(self._data) + offset
        else:
            raise ValueError("invalid whence (%r)" % whence)
        if pos < 0:
            raise ValueError("negative seek position %d" % pos)
        self._pos = pos
        return pos

    def tell(self) -> int:
        """The position in bytes from the start."""
        self._checkClosed()
        return self._pos

    def close(self) -> None:
        """Releases the bytes; later reads raise ValueError. Idempotent."""
        if not self.closed:
            self._data.release()
        super().close()


def key_file_check(path: Union[str, "os.PathLike[str]"]) -> None:
    """Checks a key file without a client (``imgstore_key_file_check``).

    Raises :class:`~imgstore.KeyFileError` (or another :class:`Error`) whose
    message is the library's one-line reason naming the file."""
    err = ctypes.create_string_buffer(_lib.ERRBUF)
    rc = _lib.lib().imgstore_key_file_check(os.fsencode(path), err, len(err))
    if rc != 0:
        raise from_code(rc, err.value.decode("utf-8", "replace") or None)


# The copy of a fetched file into a new bytes object, with the GIL released
# during the memcpy: ctypes.string_at copies while holding it (3 us for 50 KB,
# a third of the Python-side cost of a get, serialised across threads). The
# bytes object is made uninitialised by PyBytes_FromStringAndSize(NULL, n)
# and filled by ctypes.memmove (a foreign call: no GIL) before anyone else
# can see it.
# Interpreters without the C API (no ctypes.pythonapi) copy with string_at.
_bytes_new: Any = getattr(getattr(ctypes, "pythonapi", None), "PyBytes_FromStringAndSize", None)
if _bytes_new is not None:
    _bytes_new.restype = ctypes.py_object
    _bytes_new.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
_SMALL_COPY = 4096  # below this, string_at's one call is cheaper


def _copy_out(ptr: ctypes.c_void_p, n: int) -> bytes:
    if n < _SMALL_COPY or _bytes_new is None:
        return ctypes.string_at(ptr, n) if n else b""
    out = cast(bytes, _bytes_new(None, n))
    ctypes.memmove(cast(Any, out), ptr, n)  # c_void_p of a bytes: its own buffer
    return out


def _name_bytes(name: str, what: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError("name must be str, not %s" % type(name).__name__)
    try:
        b = name.encode("ascii")
    except UnicodeEncodeError:
        raise from_code(EBADNAME, what="%s %r" % (what, name)) from None
    if b"\0" in b:
        raise from_code(EBADNAME, what="%s %r" % (what, name))
    return b


def _too_big(n: int) -> Error:
    return from_code(ETOOBIG, what="put: %d bytes (at most %d)" % (n, PUT_MAX_BYTES))


def _read_limited(f: BinaryIO) -> bytes:
    """Reads a file object to its end, refusing more than PUT_MAX_BYTES
    without reading past that limit."""
    chunks = []
    total = 0
    while True:
        chunk = f.read(min(1 << 20, PUT_MAX_BYTES + 1 - total))
        if not chunk:
            break
        if not isinstance(chunk, (bytes, bytearray)):
            raise TypeError("put: the file object must be opened in binary mode")
        chunks.append(chunk)
        total += len(chunk)
        if total > PUT_MAX_BYTES:
            raise _too_big(total)
    return b"".join(chunks)


def _as_bytes(data: Data) -> Union[bytes, bytearray]:
    """The bytes to upload: a buffer as is, a path's content, a file's rest."""
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, memoryview):
        return data.tobytes()  # one copy; bytes and bytearray are passed as they are
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > PUT_MAX_BYTES:
                raise _too_big(size)
            return _read_limited(f)
    if hasattr(data, "read"):
        return _read_limited(data)
    raise TypeError("put: data must be bytes, a path or a binary file object, not %s"
                    % type(data).__name__)


class Client:
    """A connection to one imgstore cluster.

    ``ns`` is the nameserver's ``HOST:PORT``, or a comma-separated list of
    them (a leader and its standbys: the library follows the leader), default
    ``$IMGSTORE_NS``, else ``127.0.0.1:7400``. ``timeout`` bounds each whole
    call and ``io_timeout`` each request to one server, in seconds (None:
    the library's defaults, 10 s and 3 s). ``key_file`` names a key file for
    uploads and deletes (reads never need one); None keeps the library's
    default, ``$IMGSTORE_KEY_FILE`` when set. No connection is made until
    the first call.

    Every method may be called from any number of threads at once. Use the
    client as a context manager, or call :meth:`close`.
    """

    def __init__(self, ns: Optional[str] = None, timeout: Optional[float] = None,
                 key_file: Optional[Union[str, "os.PathLike[str]"]] = None,
                 io_timeout: Optional[float] = None) -> None:
        self._h: Optional[int] = None
        self._lock = threading.Lock()
        self._idle = threading.Event()  # set once closed and no call is running
        self._inflight = 0
        self._closed = True
        if ns is None:
            ns = os.environ.get("IMGSTORE_NS") or DEFAULT_NS
        if not isinstance(ns, str):
            raise TypeError("ns must be a str 'HOST:PORT'")
        self.ns = ns.strip()
        self.timeout = timeout
        self.io_timeout = io_timeout
        opts = _lib.Opts(_ms(timeout, "timeout"), _ms(io_timeout, "io_timeout"))
        L = _lib.lib()
        h = ctypes.c_void_p()
        rc = L.imgstore_open(self.ns.encode("ascii", "replace"), ctypes.byref(opts),
                             ctypes.byref(h))
        if rc != 0:
            raise from_code(rc, what="open %s" % self.ns)
        if key_file is not None:
            err = ctypes.create_string_buffer(_lib.ERRBUF)
            rc = L.imgstore_set_key_file(h, os.fsencode(key_file), err, len(err))
            if rc != 0:
                L.imgstore_close(h)
                raise from_code(rc, err.value.decode("utf-8", "replace") or None)
        self._lib = L
        self._c_get = L.imgstore_get
        self._c_put = L.imgstore_put
        self._c_free = L.imgstore_free
        self._h = h.value
        self._closed = False

    # ---- the in-flight count that makes close() safe ----------------------
    # A plain lock (its context manager is C code) and an Event, rather than
    # a Condition: these two run around every call, on the hot path.
    def _enter(self) -> int:
        with self._lock:
            if self._closed:
                raise ValueError("operation on a closed imgstore.Client")
            self._inflight += 1
            return self._h  # type: ignore[return-value]

    def _leave(self) -> None:
        with self._lock:
            self._inflight -= 1
            if self._closed and self._inflight == 0:
                self._idle.set()

    def close(self) -> None:
        """Frees the handle and its connections, after the calls still running
        on other threads have returned. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._inflight == 0:
                self._idle.set()
        self._idle.wait()
        h, self._h = self._h, None
        if h:
            self._lib.imgstore_close(h)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "<imgstore.Client ns=%s%s>" % (self.ns, " closed" if self._closed else "")

    # ---- calls -------------------------------------------------------------
    def put(self, data: Data, mime: Optional[str] = None) -> str:
        """Stores a file and returns its name (21 characters, no extension).

        ``data`` is a bytes-like object, a path (``str`` or
        :class:`os.PathLike`: the file is read), or a binary file object
        (read to its end). ``mime`` is the type to store (``"image/jpeg"``);
        None lets the library guess from the bytes. Returns once every
        replica has the file durable on disk. Needs a writer key
        (:class:`Unauthorized` without one). Raises :class:`TooBig` past
        32 MiB, before any traffic."""
        buf = _as_bytes(data)
        n = len(buf)
        if n > PUT_MAX_BYTES:
            raise _too_big(n)
        m = None
        if mime is not None:
            try:
                m = mime.encode("ascii")
            except (UnicodeEncodeError, AttributeError):
                raise from_code(EINVAL, what="put: mime %r" % (mime,)) from None
        out = ctypes.create_string_buffer(_lib.NAME_MAX)
        ptr: Any
        if isinstance(buf, bytearray):
            ptr = (ctypes.c_char * n).from_buffer(buf) if n else None
        else:
            ptr = buf
        h = self._enter()
        try:
            rc = self._c_put(h, ptr, n, m, out)
        finally:
            self._leave()
        if rc != 0:
            raise from_code(rc, what="put")
        return out.value.decode("ascii")

    def get(self, name: str) -> bytes:
        """Fetches a file by name (``NAME`` or ``NAME.ext``) and returns its
        bytes. Raises :class:`NotFound`, :class:`Deleted`, :class:`BadName`,
        :class:`Unavailable` / :class:`Timeout`, ..."""
        nb = _name_bytes(name, "get")
        data = ctypes.c_void_p()
        size = ctypes.c_size_t()
        h = self._enter()
        try:
            rc = self._c_get(h, nb, ctypes.byref(data), ctypes.byref(size))
        finally:
            self._leave()
        if rc != 0:
            raise from_code(rc, what="get %s" % name)
        try:
            return _copy_out(data, size.value)
        finally:
            self._c_free(data)

    def get_from(self, name: str, ds_addr: str) -> bytes:
        """Like :meth:`get` but reads only from the dataserver at native
        ``HOST:PORT`` ``ds_addr``, with no retry elsewhere (for checks)."""
        nb = _name_bytes(name, "get")
        data = ctypes.c_void_p()
        size = ctypes.c_size_t()
        h = self._enter()
        try:
            rc = self._lib.imgstore_get_from(h, nb, ds_addr.encode("ascii", "replace"),
                                             ctypes.byref(data), ctypes.byref(size))
        finally:
            self._leave()
        if rc != 0:
            raise from_code(rc, what="get %s from %s" % (name, ds_addr))
        try:
            return _copy_out(data, size.value)
        finally:
            self._c_free(data)

    def open(self, name: str) -> ImageFile:
        """Fetches a file and returns it as a read-only, seekable binary file
        object (:class:`ImageFile`; the whole file is read at once, see
        there). Raises as :meth:`get`."""
        return ImageFile(name, self.get(name))

    def stat(self, name: str) -> Stat:
        """Describes a stored file (:class:`Stat`). Raises as :meth:`get`."""
        nb = _name_bytes(name, "stat")
        st = _lib.CStat()
        h = self._enter()
        try:
            rc = self._lib.imgstore_stat(h, nb, ctypes.byref(st))
        finally:
            self._leave()
        if rc != 0:
            raise from_code(rc, what="stat %s" % name)
        nrep = max(0, min(st.nreplicas, _lib.MAX_REPLICAS))
        return Stat(
            name=name, size=st.size, mime=st.mime.decode("ascii", "replace"), crc32c=st.crc32c,
            created=st.created, block_id=st.block_id, seq=st.seq, offset=st.offset,
            replicas=tuple(st.replicas[i].value.decode("ascii", "replace") for i in range(nrep)))

    def delete(self, name: str) -> bool:
        """Deletes a file on every replica. Returns True when this call
        deleted it, False when it had been deleted before (that is no error,
        so a delete may be retried blindly). Raises :class:`NotFound` for an
        unknown name, :class:`Unauthorized` without a writer key."""
        nb = _name_bytes(name, "delete")
        was = ctypes.c_int(0)
        h = self._enter()
        try:
            rc = self._lib.imgstore_unlink2(h, nb, ctypes.byref(was))
        finally:
            self._leave()
        if rc != 0:
            raise from_code(rc, what="delete %s" % name)
        return not was.value


def _ms(seconds: Optional[float], what: str) -> int:
    if seconds is None:
        return 0
    ms = int(round(float(seconds) * 1000))
    if ms <= 0 or ms > 0x7FFFFFFF:
        raise ValueError("%s must be a positive number of seconds, not %r" % (what, seconds))
    return ms

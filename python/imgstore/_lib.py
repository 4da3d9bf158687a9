"""_lib.py - finds libimgstore and declares the C functions the package calls.

Only ``imgstore_*`` symbols are bound (the library exports nothing else).
Which library is loaded, first match wins:

1. ``$IMGSTORE_LIB``: a path to ``libimgstore.so*`` (an error if it cannot be
   loaded: no silent fallback to another copy);
2. the in-tree build: ``build/lib/libimgstore.so`` of the source tree this
   package sits in (``python/`` next to ``build/``), for tests and
   development;
3. the installed library: :func:`ctypes.util.find_library` (``ldconfig``'s
   cache: ``make install`` then ``ldconfig``), else the soname
   ``libimgstore.so.1`` through the dynamic loader (``LD_LIBRARY_PATH``).

The library is loaded on first use (:func:`lib`), not at import, so
``import imgstore`` works without it (for documentation tools, type checks).
ctypes releases the GIL around every call into a CDLL, so calls on one
handle from many Python threads run in parallel in C.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import threading
from typing import Optional

NAME_MAX = 32  # IMGSTORE_NAME_MAX: a name with its NUL
MAX_REPLICAS = 3  # IMGSTORE_MAX_REPLICAS
ADDR_MAX = 64  # IMGSTORE_ADDR_MAX
ERRBUF = 256  # reason buffer of imgstore_set_key_file


class Opts(ctypes.Structure):
    """struct imgstore_opts."""

    _fields_ = [("timeout_ms", ctypes.c_int), ("io_timeout_ms", ctypes.c_int)]


class CStat(ctypes.Structure):
    """struct imgstore_stat."""

    _fields_ = [
        ("block_id", ctypes.c_uint64),
        ("seq", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("crc32c", ctypes.c_uint32),
        ("created", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("mime", ctypes.c_char * 64),
        ("nreplicas", ctypes.c_int),
        ("replicas", (ctypes.c_char * ADDR_MAX) * MAX_REPLICAS),
    ]


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None


def _in_tree() -> Optional[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))  # python/imgstore -> tree root
    lib = os.path.join(root, "build", "lib")
    p = os.path.join(lib, "libimgstore.so")
    if os.path.exists(p):
        return p
    # Only a versioned file (libimgstore.so.MAJOR[...]) in the build folder.
    versioned = sorted(glob.glob(os.path.join(lib, "libimgstore.so.*")))
    return versioned[0] if versioned else None


def _load() -> "tuple[ctypes.CDLL, str]":
    env = os.environ.get("IMGSTORE_LIB")
    if env:
        return ctypes.CDLL(env), env
    p = _in_tree()
    if p:
        return ctypes.CDLL(p), p
    names = [n for n in (ctypes.util.find_library("imgstore"),) if n]
    # The soname directly: honours LD_LIBRARY_PATH, which find_library may not.
    names += ["libimgstore.so.1", "libimgstore.so"]
    for n in names:
        try:
            return ctypes.CDLL(n), n
        except OSError:
            pass
    raise OSError(
        "libimgstore not found: set IMGSTORE_LIB to the path of libimgstore.so, "
        "build the source tree (make), or install the library (make install; ldconfig)"
    )


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_char_p, c_void_p, c_size_t = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t
    P = ctypes.POINTER
    sigs = {
        "imgstore_open": (c_int, [c_char_p, P(Opts), P(c_void_p)]),
        "imgstore_key_file_check": (c_int, [c_char_p, c_char_p, c_size_t]),
        "imgstore_set_key_file": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t]),
        "imgstore_close": (None, [c_void_p]),
        "imgstore_put": (c_int, [c_void_p, c_void_p, c_size_t, c_char_p, c_char_p]),
        "imgstore_get": (c_int, [c_void_p, c_char_p, P(c_void_p), P(c_size_t)]),
        "imgstore_get_from": (c_int, [c_void_p, c_char_p, c_char_p, P(c_void_p), P(c_size_t)]),
        "imgstore_free": (None, [c_void_p]),
        "imgstore_unlink2": (c_int, [c_void_p, c_char_p, P(c_int)]),
        "imgstore_stat": (c_int, [c_void_p, c_char_p, P(CStat)]),
        "imgstore_strerror": (c_char_p, [c_int]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def lib() -> ctypes.CDLL:
    """Returns the loaded library, loading it on the first call.

    Raises OSError when no library is found or it cannot be loaded."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            handle, path = _load()
            _declare(handle)
            _path = path
            _lib = handle
    return _lib


def path() -> Optional[str]:
    """The path the library was loaded from (None before the first load)."""
    return _path


def strerror(code: int) -> str:
    """imgstore_strerror(code) as str."""
    s = lib().imgstore_strerror(code)
    return str(s.decode("utf-8", "replace")) if s else "error %d" % code

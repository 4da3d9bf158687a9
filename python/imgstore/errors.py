"""errors.py - the exceptions of the imgstore package.

Every failure of a library call raises a subclass of :class:`Error` carrying
``.code``, the library's negative code (an ``IMGSTORE_E*`` value, identical
to the server-side ``IMG_E*`` codes, or a negative errno), and ``.message``,
the library's description of it (``imgstore_strerror``). :func:`from_code`
picks the class; every ``IMG_E*`` code has one, a negative errno is
:class:`SystemFailure` (an :class:`OSError` too, with ``.errno`` set).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Type


class Error(Exception):
    """Base class of every imgstore error; ``.code`` is the library's code."""

    code: int
    message: str

    def __init__(self, code: int, message: str, what: Optional[str] = None) -> None:
        self.code = code
        self.message = message
        self.what = what
        text = "%s: %s" % (what, message) if what else message
        Exception.__init__(self, text)
        if isinstance(self, OSError):  # not an errno: OSError.__new__ took our code for one
            setattr(self, "errno", None)
            setattr(self, "strerror", message)
            setattr(self, "filename", None)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.message

    def __reduce__(self) -> Tuple[Any, ...]:  # picklable across processes
        return (type(self), (self.code, self.message, self.what))


class NotFound(Error, LookupError):
    """IMGSTORE_ENOTFOUND: no such file (or a wrong cookie: indistinguishable)."""


class Deleted(Error, LookupError):
    """IMGSTORE_EDELETED: the file existed and was deleted."""


class BadName(Error, ValueError):
    """IMGSTORE_EBADNAME: a malformed file name (length, characters, check byte)."""


class TooBig(Error, ValueError):
    """IMGSTORE_ETOOBIG: a file over 32 MiB (refused before any traffic)."""


class InvalidArgument(Error, ValueError):
    """IMGSTORE_EINVAL: an argument the library refuses (a malformed address...)."""


class Corrupt(Error):
    """IMGSTORE_ECORRUPT: every copy that answered failed its checksum."""


class ProtocolError(Error):
    """IMGSTORE_EPROTO: a malformed answer from a server."""


class Unavailable(Error):
    """IMGSTORE_EUNAVAIL and the passing failures: no server could serve the
    call in time. Retrying later may succeed."""


class NoBlock(Unavailable):
    """IMGSTORE_ENOBLOCK: no writable block is available right now."""


class NotLeader(Unavailable):
    """IMGSTORE_ENOTLEADER: no nameserver of the list leads (an election is
    under way, or their coordination service is away) until the deadline."""


class Busy(Unavailable):
    """IMGSTORE_EBUSY: a dataserver at its receive budget until the deadline."""


class Timeout(Unavailable, TimeoutError):
    """IMGSTORE_ETIMEDOUT: the call's deadline (``timeout``) passed."""


class ConnectionFailed(Unavailable, ConnectionError):
    """IMGSTORE_ECONN: connections lost or refused (e.g. no nameserver)."""


class Unauthorized(Error, PermissionError):
    """IMGSTORE_EAUTH: a write without a key, with a wrong or a revoked key."""


class Forbidden(Error, PermissionError):
    """IMGSTORE_EPERM: the key lacks the role for this request."""


class KeyFileError(Error):
    """IMGSTORE_EKEYFILE: the key file is unusable (mode, type, format)."""


class ServerError(Error):
    """A server-side IMG_E* code the library does not normally return to
    callers (EFULL, ESEALED, EREPL, ENOTPRIMARY, ...): the last attempt's
    error of a call that ran out of time. Retrying later may succeed."""


class SystemFailure(Error, OSError):
    """A negative errno from the library (``.errno`` is the positive value)."""

    def __init__(self, code: int, message: str, what: Optional[str] = None) -> None:
        Error.__init__(self, code, message, what)
        setattr(self, "errno", -code)


# Every IMG_E* code of base/err.h (client/imgstore.h has the public subset).
CODES: Dict[int, Type[Error]] = {
    -1000: NotFound,  # ENOTFOUND
    -1001: Deleted,  # EDELETED
    -1002: Corrupt,  # ECORRUPT
    -1003: ServerError,  # EFULL
    -1004: ServerError,  # ESEALED
    -1005: ServerError,  # EREPL
    -1006: NoBlock,  # ENOBLOCK
    -1007: ProtocolError,  # EPROTO
    -1008: BadName,  # EBADNAME
    -1009: TooBig,  # ETOOBIG
    -1010: ServerError,  # ENOTPRIMARY
    -1011: ServerError,  # ENOBLOCKHERE
    -1012: ServerError,  # EOFFSET
    -1013: Timeout,  # ETIMEDOUT
    -1014: Unavailable,  # EUNAVAIL
    -1015: ServerError,  # EEXIST
    -1016: Unavailable,  # ESAFEMODE
    -1017: ProtocolError,  # EBADTYPE
    -1018: ServerError,  # ELOCKED
    -1019: ServerError,  # EFORMAT
    -1020: ConnectionFailed,  # ECONN
    -1021: InvalidArgument,  # EINVAL
    -1022: ServerError,  # ESTALE
    -1023: Unavailable,  # EVIEWOLD
    -1024: Unauthorized,  # EAUTH
    -1025: Forbidden,  # EPERM
    -1026: KeyFileError,  # EKEYFILE
    -1027: ServerError,  # EIDBOUND
    -1028: ServerError,  # ECLUSTER
    -1030: Busy,  # EBUSY
    -1035: NotLeader,  # ENOTLEADER
    -1036: ServerError,  # EEPOCH (a deposed nameserver's command; servers only)
}

ENOTFOUND, EDELETED, ECORRUPT, ENOBLOCK, EPROTO, EBADNAME, ETOOBIG = (
    -1000, -1001, -1002, -1006, -1007, -1008, -1009)
ETIMEDOUT, EUNAVAIL, ECONN, EINVAL, EAUTH, EPERM, EKEYFILE, EBUSY = (
    -1013, -1014, -1020, -1021, -1024, -1025, -1026, -1030)


def error_class(code: int) -> Type[Error]:
    """The exception class for a library code (negative)."""
    cls = CODES.get(code)
    if cls is not None:
        return cls
    if -4096 < code < 0:
        return SystemFailure
    return Error


def from_code(code: int, message: Optional[str] = None, what: Optional[str] = None) -> Error:
    """The exception for `code`; `message` defaults to imgstore_strerror."""
    if message is None:
        if -4096 < code < 0 and code not in CODES:
            message = os.strerror(-code)
        else:
            from . import _lib

            message = _lib.strerror(code)
    return error_class(code)(code, message, what)


__all__ = [n for n in dir() if n[0].isupper() and n not in ("Any", "Dict", "Optional", "Tuple",
                                                            "Type")] + [
    "error_class", "from_code"]

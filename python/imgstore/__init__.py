"""imgstore - Python client of the imgstore image store, over libimgstore.

>>> import imgstore
>>> with imgstore.Client("10.0.0.1:7400", key_file="app.key") as c:
...     name = c.put("product.jpg", mime="image/jpeg")
...     data = c.get(name)

The package calls the C client library (``libimgstore.so``) through ctypes:
the same retries, caches and pooled connections as C programs, no second
implementation of the protocol. See :class:`Client`; the errors are in
:mod:`imgstore.errors` and re-exported here.
"""
from .client import DEFAULT_NS, PUT_MAX_BYTES, Client, ImageFile, Stat, key_file_check
from .errors import (BadName, Busy, ConnectionFailed, Corrupt, Deleted, Error, Forbidden,
                     InvalidArgument, KeyFileError, NoBlock, NotFound, NotLeader, ProtocolError, ServerError,
                     SystemFailure, Timeout, TooBig, Unauthorized, Unavailable)

__version__ = "0.1.0"

__all__ = [
    "Client", "ImageFile", "Stat", "key_file_check", "DEFAULT_NS", "PUT_MAX_BYTES",
    "Error", "NotFound", "Deleted", "BadName", "TooBig", "InvalidArgument", "Corrupt",
    "ProtocolError", "Unavailable", "NoBlock", "NotLeader", "Busy", "Timeout", "ConnectionFailed",
    "Unauthorized", "Forbidden", "KeyFileError", "ServerError", "SystemFailure",
]

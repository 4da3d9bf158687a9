"""util.py - helpers the Python tests share: CRC32C and the file-name codec
(proto/fname.h: '1' + base64url of block_id[6] seq[4] cookie[4] check[1],
check = low byte of CRC32C of the first 14 bytes), to make names that are
well formed but name nothing, or a stored file with a wrong cookie."""
from __future__ import annotations

import base64
import random
import struct
from typing import Tuple

_T = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _T.append(_c)


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def name_decode(name: str) -> Tuple[int, int, int]:
    raw = base64.urlsafe_b64decode(name[1:21] + "=")
    return int.from_bytes(raw[:6], "big"), struct.unpack(">I", raw[6:10])[0], \
        struct.unpack(">I", raw[10:14])[0]


def name_encode(block_id: int, seq: int, cookie: int) -> str:
    raw = block_id.to_bytes(6, "big") + struct.pack(">II", seq, cookie)
    raw += bytes([crc32c(raw) & 0xFF])
    return "1" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jpeg(size: int, seed: int) -> bytes:
    """`size` bytes starting like a JPEG (so the library sniffs image/jpeg
    when size >= 3), the rest seeded random."""
    r = random.Random(seed)
    head = b"\xff\xd8\xff\xe0"[:size]
    return head + r.randbytes(size - len(head))

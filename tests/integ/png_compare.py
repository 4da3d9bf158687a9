#!/usr/bin/env python3
"""png_compare.py - compares two screenshots (PNG, 8-bit RGB or RGBA, not
interlaced) within a tolerance, for tests/integ/test_ops.c.

    png_compare.py SHOT.png REFERENCE.png

Both images are cut into 16x16-pixel cells and each cell's mean luminance
(0..255) is compared: a cell differs when its means are more than 24 apart.
Font rasterisation and anti-aliasing move a cell's mean a little; a section
missing, moved or overflowing moves many cells a lot. Prints the sizes and
the share of differing cells; exits 0 when the sizes are equal and at most
3 % of the cells differ, 1 when not, 2 when a file is not a PNG it reads.
Standard library only (zlib)."""
import struct
import sys
import zlib

CELL = 16
CELL_DIFF = 24
MAX_SHARE = 0.03


def read_png(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(path + ": not a PNG")
    pos, idat, hdr = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if hdr is None:
        raise ValueError(path + ": no IHDR")
    width, height, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("%s: unsupported PNG (depth %d, colour type %d, interlace %d)"
                         % (path, depth, ctype, interlace))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows, prev, off = [], bytearray(stride), 0
    for _ in range(height):
        ftype, line = raw[off], bytearray(raw[off + 1:off + 1 + stride])
        off += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def cell_means(width, height, bpp, rows):
    cw, ch = (width + CELL - 1) // CELL, (height + CELL - 1) // CELL
    sums = [0.0] * (cw * ch)
    counts = [0] * (cw * ch)
    for y, line in enumerate(rows):
        base = (y // CELL) * cw
        for x in range(width):
            i = x * bpp
            lum = 0.299 * line[i] + 0.587 * line[i + 1] + 0.114 * line[i + 2]
            sums[base + x // CELL] += lum
            counts[base + x // CELL] += 1
    return [s / n for s, n in zip(sums, counts)]


def main(argv):
    if len(argv) != 3:
        print("usage: png_compare.py SHOT.png REFERENCE.png", file=sys.stderr)
        return 2
    try:
        a, b = read_png(argv[1]), read_png(argv[2])
    except (OSError, ValueError, zlib.error) as e:
        print(e, file=sys.stderr)
        return 2
    if a[:2] != b[:2]:
        print("sizes differ: %dx%d and %dx%d" % (a[0], a[1], b[0], b[1]))
        return 1
    ma, mb = cell_means(*a), cell_means(*b)
    bad = sum(1 for x, y in zip(ma, mb) if abs(x - y) > CELL_DIFF)
    share = bad / len(ma)
    print("%dx%d, %d of %d cells differ (%.2f%%, at most %.0f%%)"
          % (a[0], a[1], bad, len(ma), share * 100, MAX_SHARE * 100))
    return 0 if share <= MAX_SHARE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

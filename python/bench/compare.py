"""compare.py - `make bench-python`: Python put/get ops/s against the C
`imgstore bench`, in the same run on the same cluster.

Starts a cluster of its own (python/tests/cluster.py: a nameserver and 3
dataservers, replication 2, in a temporary folder), then for each round runs
the C load generator (`imgstore bench -n FILES -c THREADS --size SIZE
--duration SECS --json`) and the same load through the Python package: an
upload phase of FILES files of SIZE bytes from THREADS threads sharing one
Client, then a read phase of SECS seconds in which the threads read the
uploaded files in a random order, checking each one's length and the index
stamped in its first 8 bytes (as the C bench does). Prints one table and a
JSON line with the figures and the ratios Python / C (goal: >= 0.8).

Environment: BENCH_FILES (1000), BENCH_THREADS (8), BENCH_SIZE (51200),
BENCH_SECS (10), BENCH_ROUNDS (2; C and Python alternate).
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import imgstore  # noqa: E402
from cluster import BIN, Cluster  # noqa: E402

FILES = int(os.environ.get("BENCH_FILES", "1000"))
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
SIZE = int(os.environ.get("BENCH_SIZE", "51200"))
SECS = float(os.environ.get("BENCH_SECS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


def c_bench(cl: Cluster) -> dict:
    r = subprocess.run([os.path.join(BIN, "imgstore"), "--ns", cl.ns_addr, "bench", "-n",
                        str(FILES), "-c", str(THREADS), "--size", str(SIZE), "--duration",
                        str(SECS), "--json"], capture_output=True, text=True,
                       env=dict(os.environ, IMGSTORE_KEY_FILE=cl.writer_key), timeout=600)
    if r.returncode != 0:
        raise RuntimeError("imgstore bench failed: %s" % r.stderr[-2000:])
    doc = json.loads(r.stdout)
    out = {}
    for ph in ("upload", "read"):
        p = doc[ph] if ph in doc else next(x for x in doc["phases"] if x["name"] == ph)
        out[ph] = {"ops_per_s": float(p["ops_per_s"]), "errors": int(p.get("errors", 0))}
    return out


def py_bench(cl: Cluster) -> dict:
    base = random.Random(42).randbytes(SIZE)
    names = [None] * FILES
    errors = [0, 0]
    with imgstore.Client(cl.ns_addr, key_file=cl.writer_key) as c:
        nxt = iter(range(FILES))
        lock = threading.Lock()

        def upload():
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                try:
                    names[i] = c.put(struct.pack("<Q", i) + base[8:], mime="image/jpeg")
                except imgstore.Error:
                    errors[0] += 1

        t0 = time.monotonic()
        ths = [threading.Thread(target=upload) for _ in range(THREADS)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        up = (FILES - errors[0]) / (time.monotonic() - t0)
        stored = [(i, n) for i, n in enumerate(names) if n]
        counts = [0] * THREADS
        end = [0.0]

        def read(k):
            order = stored[:]
            random.Random(k).shuffle(order)
            j = 0
            while time.monotonic() < end[0]:
                i, n = order[j % len(order)]
                j += 1
                try:
                    d = c.get(n)
                    if len(d) != SIZE or struct.unpack("<Q", d[:8])[0] != i:
                        errors[1] += 1
                        continue
                    counts[k] += 1
                except imgstore.Error:
                    errors[1] += 1

        t0 = time.monotonic()
        end[0] = t0 + SECS
        ths = [threading.Thread(target=read, args=(k,)) for k in range(THREADS)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        rd = sum(counts) / (time.monotonic() - t0)
    return {"upload": {"ops_per_s": up, "errors": errors[0]},
            "read": {"ops_per_s": rd, "errors": errors[1]}}


def main() -> int:
    cl = Cluster(nds=3, replicas=2)
    ok = False
    try:
        cl.start()
        runs = {"c": [], "py": []}
        for r in range(ROUNDS):
            print("bench-python: round %d/%d: C imgstore bench" % (r + 1, ROUNDS), file=sys.stderr)
            runs["c"].append(c_bench(cl))
            print("bench-python: round %d/%d: Python" % (r + 1, ROUNDS), file=sys.stderr)
            runs["py"].append(py_bench(cl))
        res = {"files": FILES, "threads": THREADS, "size": SIZE, "secs": SECS, "rounds": ROUNDS,
               "library": imgstore._lib.path()}
        print("\n%-34s %12s %12s %8s" % ("%d x %d B, %d threads, %d rounds" % (FILES, SIZE,
              THREADS, ROUNDS), "C ops/s", "Python", "Py/C"))
        for ph in ("upload", "read"):
            cv = sum(x[ph]["ops_per_s"] for x in runs["c"]) / ROUNDS
            pv = sum(x[ph]["ops_per_s"] for x in runs["py"]) / ROUNDS
            ce = sum(x[ph]["errors"] for x in runs["c"])
            pe = sum(x[ph]["errors"] for x in runs["py"])
            res[ph] = {"c": round(cv, 1), "py": round(pv, 1), "ratio": round(pv / cv, 3),
                       "c_errors": ce, "py_errors": pe,
                       "c_rounds": [round(x[ph]["ops_per_s"]) for x in runs["c"]],
                       "py_rounds": [round(x[ph]["ops_per_s"]) for x in runs["py"]]}
            print("%-34s %12.0f %12.0f %7.2fx  (errors %d/%d; goal >= 0.8x)"
                  % ("%ss/s" % ph, cv, pv, pv / cv, ce, pe))
        print(json.dumps(res))
        ok = True
    finally:
        cl.stop(dump_logs=not ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())

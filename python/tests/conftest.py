"""conftest.py - fixtures of the Python tests: one real cluster for the
whole session (tests/cluster.py), stopped and removed at the end whatever
happened, its server logs printed when a test failed; and clients on it.

The package under test is this tree's (python/), over this tree's
build/lib/libimgstore.so unless $IMGSTORE_LIB says otherwise."""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # python/: the package of this tree
sys.path.insert(0, HERE)

import imgstore  # noqa: E402
from cluster import Cluster  # noqa: E402

_failed = []


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        _failed.append(item.nodeid)


@pytest.fixture(scope="session")
def cluster():
    # The fixture's servers read IMGSTORE_KEY_FILE from nobody: the tests
    # give keys explicitly, so a key in the caller's environment is dropped.
    os.environ.pop("IMGSTORE_KEY_FILE", None)
    c = Cluster(nds=3, replicas=2)
    try:
        c.start()
        yield c
    finally:
        c.stop(dump_logs=bool(_failed))


@pytest.fixture
def client(cluster):
    """A client with the writer key."""
    with imgstore.Client(cluster.ns_addr, timeout=10, key_file=cluster.writer_key) as c:
        yield c


@pytest.fixture
def reader(cluster):
    """A client without a key."""
    with imgstore.Client(cluster.ns_addr, timeout=10) as c:
        yield c

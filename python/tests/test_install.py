"""test_install.py - the install command of python/README.md and the
README's example, as a user runs them: a copy of python/ installed with
`pip install --no-index --no-build-isolation` into a new
`python3 -m venv --system-site-packages` (Debian's setuptools and wheel,
no index), then the example from README.md run by that environment's
python (outside the source tree, so the installed package is the one
imported) against the test cluster, uploading a product image and printing
its CDN URL."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from cluster import ROOT


def _example() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"```python\n(.*?)```", text, re.S)
    assert m, "no python example in README.md"
    code = m.group(1)
    assert len(code.strip().splitlines()) <= 10, "the README example is over 10 lines"
    return code


def test_pip_install_and_readme_example(cluster, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "python"), src,
                    ignore=shutil.ignore_patterns("tests", "bench", "build", "*.egg-info",
                                                  "__pycache__"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, env=env, timeout=120)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        str(src)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    (work / "product-4711.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000))
    code = _example().replace('"10.0.0.1:7400"', repr(cluster.ns_addr)).replace(
        '"/etc/shop/imgstore.key"', repr(cluster.writer_key))
    code = "import imgstore, sys\nassert 'site-packages' in imgstore.__file__, imgstore.__file__\n" \
        + code
    lib = os.environ.get("IMGSTORE_LIB") or os.path.join(ROOT, "build", "lib", "libimgstore.so")
    r = subprocess.run([py, "-c", code], cwd=work, capture_output=True, text=True,
                       env=dict(env, IMGSTORE_LIB=lib), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    m = re.fullmatch(r"https://img\.example\.com/(1[A-Za-z0-9_-]{20})\.jpg", lines[0])
    assert m, lines
    assert lines[1].startswith("3004 image/jpeg \"")
    import imgstore

    with imgstore.Client(cluster.ns_addr) as c:
        assert c.get(m.group(1)) == (work / "product-4711.jpg").read_bytes()

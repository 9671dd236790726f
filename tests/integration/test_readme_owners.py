"""README's First steps on a real libvirtd (issue 19, item 9): "Two specs on one host"
and "Removing everything", run as written against the lab's libvirtd, which keeps what
each command did (test:///default does not, so these paths cannot run there).

Named kvt-ub-* (bridges kvtub*), the helper's own prefix on the shared lab; cleanup
removes only those."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.libvirtd import Libvirtd, remove_objects

pytestmark = pytest.mark.libvirtd

ROOT = Path(__file__).resolve().parents[2]
KVMNET = str(Path(sys.executable).parent / "kvmnet")
PREFIX = "kvt-ub-"


def kvmnet(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([KVMNET, *args], capture_output=True, text=True, timeout=120,
                         check=False)
    assert "Traceback" not in res.stderr, res.stderr
    return res


@pytest.fixture
def lab(libvirtd: Libvirtd) -> Iterator[Libvirtd]:
    conn = libvirtd.open()
    try:
        remove_objects(conn, PREFIX)
        yield libvirtd
    finally:
        remove_objects(conn, PREFIX)
        conn.close()


def owners(uri: str) -> dict[str, str]:
    res = kvmnet("show", "-c", uri, "--no-headers")
    assert res.returncode == 0, res.stderr
    nets = res.stdout.split("\n\n")[0].splitlines()
    return {r.split()[0]: r.split()[-1] for r in nets if r.startswith(PREFIX)}


def test_two_specs_on_one_host_then_removing_everything(lab: Libvirtd, tmp_path: Path
                                                        ) -> None:
    a, b = tmp_path / "team-a.yaml", tmp_path / "team-b.yaml"
    # README's two files, with the lab's names
    text = (ROOT / "README.md").read_text()
    part = text[text.index("### Two specs on one host"):text.index("### Removing everything")]
    ya, yb = re.findall(r"^```yaml\n(.*?)^```", part, re.M | re.S)
    lab_names = {"web:": "kvt-ub-web:", "db:": "kvt-ub-db:", "brweb": "kvtubweb",
                 "brdb": "kvtubdb"}
    for f, y in ((a, ya), (b, yb)):
        for old, new in lab_names.items():
            y = y.replace(old, new)
        f.write_text(y)
    for f in (a, b):
        res = kvmnet("apply", str(f), "-c", lab.uri, "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
    assert owners(lab.uri) == {"kvt-ub-web": "team-a", "kvt-ub-db": "team-b"}
    # team A's plan leaves team B's network alone and has nothing to do
    res = kvmnet("plan", str(a), "-c", lab.uri, "--detailed-exitcode")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "  = network/kvt-ub-db (owned by team-b)" in res.stdout.splitlines()
    # removing everything of team A: team B's network stays
    res = kvmnet("destroy", str(a), "-c", lab.uri, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert owners(lab.uri) == {"kvt-ub-db": "team-b"}
    res = kvmnet("destroy", str(b), "-c", lab.uri, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert owners(lab.uri) == {}

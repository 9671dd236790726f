"""What a sysadmin installs (README "Install for real use"): the sdist and wheel build from
this checkout, the wheel installs into a fresh venv with only its declared dependencies
(offline, from the wheelhouse ./scripts/setup builds in .venv/wheelhouse) and works
there: `kvmnet validate` of the seed; without the `ovn` extra an overlay spec gets a
clear error naming it, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from setuptools_scm import get_version

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
OVERLAY = """\
ovn: {northbound: "unix:/nonexistent/kvt-ovnnb_db.sock"}
networks:
  tenant: {mode: overlay, ipv4: {address: 10.240.9.1/24, dhcp: 10.240.9.100-10.240.9.199}}
"""


def scm_version() -> str:
    """The version a build of this checkout gets: setuptools-scm with the project's own
    settings (a clone without tags builds on fallback_version, as pip and build do)."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools_scm"]
    return get_version(root=str(ROOT), **settings)


def run(args: list[str | Path], cwd: Path,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist, then the wheel built from that sdist (python -m build's default order),
    without build isolation: the build tools come from the test venv, not the network."""
    out = tmp_path_factory.mktemp("dist")
    r = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def fresh(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel installed (its bin/ folder)."""
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no wheels in {WHEELHOUSE}: run ./scripts/setup", pytrace=False)
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    r = run([sys.executable, "-m", "venv", venv], ROOT)
    assert r.returncode == 0, r.stderr
    wheel = next(dist.glob("kvmnet-*.whl"))
    r = run([venv / "bin" / "pip", "install", "-q", "--no-index", "--find-links", WHEELHOUSE,
             wheel], ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    yield venv / "bin"


def test_sdist_and_wheel_hold_the_package(dist: Path) -> None:
    # the version is the git tag's, through setuptools-scm (docs/RELEASING.md)
    version = scm_version()
    names = sorted(p.name for p in dist.iterdir())
    assert names == [f"kvmnet-{version}-py3-none-any.whl", f"kvmnet-{version}.tar.gz"]
    with zipfile.ZipFile(dist / names[0]) as whl:
        files = set(whl.namelist())
        meta = whl.read(f"kvmnet-{version}.dist-info/METADATA").decode()
        entry = whl.read(f"kvmnet-{version}.dist-info/entry_points.txt").decode()
    assert f"\nVersion: {version}\n" in meta
    # every module of the package, its typing marker, the console script as declared
    modules = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src/kvmnet").rglob("*.py")}
    assert modules and modules | {"kvmnet/py.typed"} <= files
    # kvmnet serve's templates, script and stylesheet (package data, no CDN)
    web = {str(p.relative_to(ROOT / "src")) for d in ("templates", "static")
           for p in (ROOT / "src/kvmnet/web" / d).iterdir()}
    assert {"kvmnet/web/static/app.js", "kvmnet/web/templates/page.html"} <= web <= files
    assert not any(f.startswith(("tests/", "bench/")) for f in files)
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert f"kvmnet = {script['kvmnet']}" in entry
    assert "Requires-Dist: ovsdbapp>=2.4; extra == \"ovn\"" in meta
    assert not any(line.startswith("Requires-Dist: ovsdbapp") and "extra" not in line
                   for line in meta.splitlines())
    for dep in ("starlette", "uvicorn", "jinja2"):   # kvmnet serve's: the web extra only
        assert any(line.startswith(f"Requires-Dist: {dep}") and 'extra == "web"' in line
                   for line in meta.splitlines()), dep
        assert not any(line.startswith(f"Requires-Dist: {dep}") and "extra" not in line
                       for line in meta.splitlines()), dep


def test_wheel_in_a_fresh_venv_validates_the_seed(fresh: Path, tmp_path: Path) -> None:
    r = run([fresh / "python", "-c", "import kvmnet; print(kvmnet.__file__)"], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(str(fresh.parent)), r  # not this checkout
    r = run([fresh / "kvmnet", "validate", ROOT / "examples" / "seed.yaml"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "valid (3 network(s), 1 guest(s), 1 host bridge(s))" in r.stdout
    r = run([fresh / "kvmnet", "--version"], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(f"kvmnet {scm_version()}"), r


def test_wheel_without_ovn_extra_names_it_for_an_overlay(fresh: Path, tmp_path: Path) -> None:
    assert run([fresh / "python", "-c", "import ovsdbapp"], tmp_path).returncode != 0
    spec = tmp_path / "overlay.yaml"
    spec.write_text(OVERLAY)
    r = run([fresh / "kvmnet", "plan", spec, "-c", "test:///default"], tmp_path)
    assert r.returncode == 1, r
    assert "pip install 'kvmnet[ovn]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_wheel_without_web_extra_names_it_for_serve(fresh: Path, tmp_path: Path) -> None:
    assert run([fresh / "python", "-c", "import starlette"], tmp_path).returncode != 0
    r = run([fresh / "kvmnet", "serve", "-c", "test:///default"], tmp_path)
    assert r.returncode == 1, r
    assert "pip install 'kvmnet[web]'" in r.stderr and "Traceback" not in r.stderr, r.stderr

"""ovsdbapp is an optional extra (kvmnet[ovn]): without it everything but overlays works,
and an overlay spec gets a clear error that names the extra, not a traceback.
(tests/integration/test_packaging.py checks the same in a fresh venv of the wheel.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kvmnet.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = """\
ovn: {northbound: "unix:/nonexistent/kvt-ovnnb_db.sock"}
networks:
  tenant: {mode: overlay, ipv4: {address: 10.240.9.1/24, dhcp: 10.240.9.100-10.240.9.199}}
"""


@pytest.fixture
def without_ovsdbapp(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if ovsdbapp were not installed: a None entry makes every import of it fail."""
    for name in [m for m in sys.modules if m == "ovsdbapp" or m.startswith("ovsdbapp.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "ovsdbapp", None)


@pytest.mark.usefixtures("without_ovsdbapp")
def test_overlay_plan_without_ovsdbapp_names_the_extra(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "overlay.yaml"
    spec.write_text(OVERLAY)
    assert main(["validate", str(spec)]) == 0   # validating needs no OVN
    capsys.readouterr()
    assert main(["plan", str(spec), "-c", "test:///default"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'kvmnet[ovn]'" in err and "ovsdbapp" in err, err
    assert "Traceback" not in err


@pytest.mark.usefixtures("without_ovsdbapp")
def test_plan_without_overlay_needs_no_ovsdbapp(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan", str(ROOT / "examples" / "seed.yaml"), "-c", "test:///default"])
    err = capsys.readouterr().err
    assert rc in (0, 2), err   # 2: changes to make
    assert "ovsdbapp" not in err

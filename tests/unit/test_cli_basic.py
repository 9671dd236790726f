"""The CLI contract for validate and mac: exit codes, where output goes, --json."""

from __future__ import annotations

import json
import random
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kvmnet import __version__
from kvmnet.cli.main import main
from kvmnet.model.derive import stable_mac

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"
SEED_AS_WRITTEN = ROOT / "examples" / "seed-as-written.yaml"
KVMNET = Path(sys.executable).parent / "kvmnet"
MAC_RE = re.compile(r"^52:54:00(:[0-9a-f]{2}){3}$")

WARN_ONLY = """\
host:
  bridges:
    br0: {address: 192.168.1.1/24, gateway: 10.0.0.1}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.out, cap.err


# ------------------------------------------------------------------ validate

def test_validate_seed(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "validate", str(SEED))
    assert (rc, err) == (0, "")
    assert out == f"{SEED}: valid (3 network(s), 1 guest(s), 1 host bridge(s))\n"


def test_validate_seed_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "validate", str(SEED_AS_WRITTEN))
    assert (rc, out) == (1, "")
    lines = err.splitlines()
    assert lines[0].startswith(f"{SEED_AS_WRITTEN}:25:21: error: networks.mynet1.ipv4.address: ")
    assert lines[0].endswith("write 203.0.113.89/29")
    assert lines[1].startswith(f"{SEED_AS_WRITTEN}:33:18: error: guests.web1.interfaces.1.bridge:")
    assert "network: lan, or bridge: br0" in lines[1]
    assert lines[2:] == ["2 error(s); nothing was changed."]


def test_validate_json_valid(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "validate", "--json", str(SEED))
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"kvmnet": 1, "ok": True, "problems": []}


def test_validate_json_errors(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "validate", str(SEED_AS_WRITTEN), "--json")
    assert (rc, err) == (1, "")
    doc = json.loads(out)
    assert doc["ok"] is False
    assert [(p["line"], p["col"], p["severity"]) for p in doc["problems"]] == [
        (25, 21, "error"), (33, 18, "error")]
    assert all(p["file"] == str(SEED_AS_WRITTEN) for p in doc["problems"])
    assert set(doc["problems"][0]) == {"file", "line", "col", "severity", "message", "path",
                                       "hint"}


def test_validate_json_load_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("networks: [\n")
    rc, out, err = run(capsys, "validate", "--json", str(f))
    assert (rc, err) == (1, "")
    (p,) = json.loads(out)["problems"]
    assert p["message"].startswith("YAML syntax:")


def test_validate_json_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "validate", "--json", str(tmp_path / "nope.yaml"))
    assert rc == 1
    assert json.loads(out)["problems"] == [{"file": str(tmp_path / "nope.yaml"), "line": 0,
                                            "col": 0, "severity": "error",
                                            "message": "no such file", "path": None,
                                            "hint": None}]


def test_warnings_print_but_do_not_fail(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(WARN_ONLY)
    rc, out, err = run(capsys, "validate", str(f))
    assert rc == 0
    assert "valid (0 network(s), 0 guest(s), 1 host bridge(s))" in out
    assert err == f"{f}:3:45: warning: host.bridges.br0.gateway: gateway 10.0.0.1 is not in " \
                  "any of br0's subnets (192.168.1.0/24)\n"


def test_warnings_in_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(WARN_ONLY)
    rc, out, err = run(capsys, "validate", "--json", str(f))
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert doc["ok"] is True
    assert [p["severity"] for p in doc["problems"]] == ["warning"]


def test_errors_and_warnings_together(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    """When there are errors, warnings are printed with them and not counted as errors."""
    f = tmp_path / "ew.yaml"
    f.write_text(WARN_ONLY + "networks:\n  a: {ipv4: {address: 10.0.0.0/24}}\n")
    rc, _, err = run(capsys, "validate", str(f))
    assert rc == 1
    assert ": warning: host.bridges.br0.gateway" in err
    assert ": error: networks.a.ipv4.address" in err
    assert err.endswith("1 error(s); nothing was changed.\n")


def test_validate_subprocess() -> None:
    r = subprocess.run([str(KVMNET), "validate", str(SEED)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert (r.returncode, r.stderr) == (0, "")
    assert "valid" in r.stdout


# ------------------------------------------------------------------ mac

def _token_bytes(avoid: bytes) -> Callable[[int], bytes]:
    rng = random.Random(1)

    def token_bytes(n: int) -> bytes:
        return bytes(rng.choice([b for b in range(256) if b not in avoid]) for _ in range(n))
    return token_bytes


def test_mac_one(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "token_bytes", _token_bytes(b"\xab\xcd"))
    rc, out, err = run(capsys, "mac")
    assert (rc, err) == (0, "")
    assert MAC_RE.match(out.strip())


def test_mac_count_unique_unicast(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Deterministic, and without the bytes ab/cd that the emoji bug below garbles.
    monkeypatch.setattr(secrets, "token_bytes", _token_bytes(b"\xab\xcd"))
    rc, out, _ = run(capsys, "mac", "--count", "200")
    macs = out.split()
    assert rc == 0 and len(macs) == len(set(macs)) == 200
    assert all(MAC_RE.match(m) for m in macs)


def test_mac_printed_verbatim(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "token_bytes", lambda n: b"\xab\xcd\xef"[:n])
    rc, out, _ = run(capsys, "mac")
    assert (rc, out) == (0, "52:54:00:ab:cd:ef\n")


def test_mac_for_printed_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    assert stable_mac("web308", 0) == "52:54:00:ab:db:2d"
    rc, out, _ = run(capsys, "mac", "--for", "web308/0")
    assert (rc, out) == (0, "52:54:00:ab:db:2d\n")


def test_mac_for_is_stable(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "mac", "--for", "web1/0")
    assert rc == 0 and out.strip() == stable_mac("web1", 0)
    assert run(capsys, "mac", "--for", "web1/0")[1] == out


def test_mac_for_with_spec_uses_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    """web1's second NIC has its MAC written in the seed: --spec resolves to that."""
    rc, out, _ = run(capsys, "mac", "--spec", str(SEED), "--for", "web1/1")
    assert (rc, out) == (0, "52:54:00:c5:97:8b\n")


def test_mac_random_avoids_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "mac", "--spec", str(SEED), "-n", "50")
    assert rc == 0 and "52:54:00:c5:97:8b" not in out.split()


def test_mac_with_bad_spec(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "mac", "--spec", str(SEED_AS_WRITTEN), "--for", "web1/1")
    assert (rc, out) == (1, "")
    assert f"{SEED_AS_WRITTEN}:25:21: error:" in err


# ------------------------------------------------------------------ the rest

def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """kvmnet's, libvirt's and libvirt-python's versions: what a bug report needs."""
    import importlib.metadata

    import libvirt

    rc, out, _ = run(capsys, "--version")
    n = libvirt.getVersion()
    assert (rc, out.splitlines()) == (0, [
        f"kvmnet {__version__}",
        f"libvirt {n // 1_000_000}.{n // 1000 % 1000}.{n % 1000} (library)",
        f"libvirt-python {importlib.metadata.version('libvirt-python')}"])


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"], ["mac", "-h"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, *argv)
    assert rc == 0 and "Usage: kvmnet" in out


def test_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """No command: the help (usage and commands) on stdout, exit 0, no traceback."""
    rc, out, err = run(capsys)
    assert rc == 0 and err == ""
    assert "Usage: kvmnet" in out and "validate" in out and "kvmnet: error" not in out


def test_every_command_is_in_the_lazy_map() -> None:
    """cli.main.COMMANDS names each command's module: a command a module adds without
    an entry there would never be found (and one listed but gone would fail --help)."""
    import importlib

    import typer

    from kvmnet.cli.main import COMMANDS

    for module in set(COMMANDS.values()):
        group = typer.main.get_group(importlib.import_module(module).app)
        assert set(group.commands) == {c for c, m in COMMANDS.items() if m == module}, module


def test_a_spec_command_loads_no_libvirt() -> None:
    """The lazy group imports only the running command's module: validate needs
    neither libvirt nor the commands that talk to it."""
    code = ("import sys; from kvmnet.cli.main import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('libvirt', 'kvmnet.cli.live', 'kvmnet.cli.diag', "
            "'kvmnet.cli.local') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, "validate", str(SEED)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "['kvmnet.cli.local']"

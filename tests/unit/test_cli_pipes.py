"""Output that pipes (issue 19, item 6): show and leases as kubectl's and virsh's tables
(whole cells, plain columns into a pipe, -o wide, --no-headers), lease expiry as a time,
and --json that is one JSON object whatever happens, failures too. Each test runs the
command as a user would, on libvirt's test:///default driver."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from kvmnet.cli import output
from kvmnet.cli.main import main
from kvmnet.cli.output import when
from kvmnet.model.spec import Spec

ROOT = Path(__file__).resolve().parents[2]
KVMNET = Path(sys.executable).parent / "kvmnet"
BOX = set("─│┃━┏┓┗┛┡┩└┘┌┐╇╈")
T = "test:///default"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.out, cap.err


def test_show_into_a_pipe_is_plain_columns() -> None:
    res = subprocess.run([str(KVMNET), "show", "-c", T], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert not BOX & set(res.stdout)
    nets, nics = res.stdout.split("\n\n")
    assert [line.split() for line in nets.splitlines()] == [
        ["NAME", "MODE", "BRIDGE", "SUBNETS", "ACTIVE", "AUTOSTART", "OWNER"],
        ["default", "nat", "virbr0", "192.168.122.1/24", "yes", "no", "unmanaged"]]
    assert [line.split() for line in nics.splitlines()] == [
        ["GUEST", "STATE", "MAC", "ATTACHED", "TO", "IP", "FIREWALL"],
        ["test", "running", "aa:bb:cc:dd:ee:ff", "network:default", "-", "-"]]
    # columns line up: each header starts where its cells do
    head, row = nets.splitlines()
    assert head.index("SUBNETS") == row.index("192.168.122.1/24")


def test_wide_adds_columns_and_no_headers_drops_them(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    rc, out, _ = run(capsys, "show", "-c", T, "-o", "wide")
    assert rc == 0
    assert out.split("\n\n")[1].splitlines()[0].split() == [
        "GUEST", "STATE", "MAC", "ATTACHED", "TO", "MODEL", "IP", "ADDRESSES", "FIREWALL",
        "VLANS"]
    rc, out, _ = run(capsys, "show", "-c", T, "--no-headers")
    assert rc == 0
    assert [b.splitlines()[0].split()[0] for b in out.split("\n\n")] == ["default", "test"]
    assert "NAME" not in out and "GUEST" not in out


def test_a_terminal_gets_a_table_that_cuts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 30-column terminal: rich would shorten cells to 'aa:bb:…'; kvmnet's table is as
    wide as its cells need and the terminal folds the lines."""
    buf = io.StringIO()
    monkeypatch.setattr(output.out, "console", Console(file=buf, force_terminal=True,
                                                       width=30, color_system=None))
    assert main(["show", "-c", T]) == 0
    text = buf.getvalue()
    assert "…" not in text and BOX & set(text)
    assert "aa:bb:cc:dd:ee:ff" in text and "192.168.122.1/24" in text
    assert "networks on test:///default" in text
    assert output.out.console.width == 30   # (given back after the table)


def test_no_leases_says_so_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "leases", "-c", T)
    assert (rc, out, err) == (0, "", "No leases on test:///default.\n")
    rc, out, err = run(capsys, "leases", "default", "-c", T, "--json")
    assert rc == 0 and json.loads(out) == {"kvmnet": 1, "uri": T, "leases": []}


def test_expiry_is_a_local_time_and_how_far_off() -> None:
    now = 1_800_000_000.0
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now + 43 * 60 + 5))
    assert when(now + 43 * 60 + 5, now) == f"{at} (in 43m)"
    assert when(now + 2 * 3600 + 5 * 60, now).endswith("(in 2h5m)")
    assert when(now + 3 * 86400 + 4 * 3600 + 1, now).endswith("(in 3d4h)")
    assert when(now + 20, now).endswith("(in 20s)")
    assert when(now - 125, now).endswith("(2m5s ago)")
    assert when(now + 45 * 60 + 59, now).endswith("(in 45m)")   # (seconds under 10m only)
    assert when(None, now) == when(0, now) == "-"


# -- --json: one object, failures too ------------------------------------------------

def test_validate_json_has_the_version_and_each_problems_path_and_hint(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "validate", "--json", str(ROOT / "tests/data/bad/bad_mac.yaml"))
    assert (rc, err) == (1, "")
    doc = json.loads(out)
    assert (doc["kvmnet"], doc["ok"]) == (1, False)
    p = [x for x in doc["problems"] if x["severity"] == "error"][1]
    assert (p["path"], p["hint"]) == ("guests.web1.interfaces.1.mac",
                                      "write six hex pairs separated by ':', e.g. "
                                      '"52:54:00:12:34:56"')
    assert p["message"].startswith(p["path"] + ": ") and p["message"].endswith(p["hint"])
    rc, out, _ = run(capsys, "validate", "--json", str(ROOT / "examples/seed.yaml"))
    assert rc == 0 and json.loads(out) == {"kvmnet": 1, "ok": True, "problems": []}


@pytest.mark.parametrize("argv", [
    ["plan", "--json", "examples/seed.yaml", "-c", "nosuch:///x"],
    ["show", "-c", "nosuch:///x", "--json"],
    ["show", "-o", "json", "-c", "nosuch:///x"],
    ["leases", "nosuchnet", "-c", T, "--json"],
    ["doctor", "--json", "nosuch.yaml"],
    ["apply", "--json", "examples/seed.yaml", "-c", T],        # stdin is no terminal
    ["show", "--json", "--bogus"],                              # a usage error
    ["import", "-c", "nosuch:///x", "--json"],
    ["mac", "--json", "--for", "web1"],
    ["confirm", "--json", "--root", "/nonexistent-kvmnet-root"],
])
def test_every_json_failure_is_one_json_object(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    rc, out, err = run(capsys, *argv)
    assert rc == 1 and err == ""
    doc = json.loads(out)
    assert (doc["kvmnet"], doc["ok"]) == (1, False)
    assert doc["problems"] and all(p["severity"] == "error" and p["message"]
                                   for p in doc["problems"])


def test_a_command_without_json_fails_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "render", "--json", "examples/seed.yaml")
    assert (rc, out) == (1, "") and "No such option: --json" in err


def test_import_json_is_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "import", "-c", T, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert (doc["kvmnet"], doc["uri"]) == (1, T)
    spec = Spec.model_validate(doc["spec"])
    assert spec.networks["default"].bridge == "virbr0" and "test" in spec.guests


def test_mac_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "mac", "-n", "3", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["kvmnet"] == 1 and len(set(doc["macs"])) == 3
    rc, out, _ = run(capsys, "mac", "--for", "web1/1", "--json")
    rc2, text, _ = run(capsys, "mac", "--for", "web1/1")
    assert json.loads(out) == {"kvmnet": 1, "guest": "web1", "index": 1,
                               "macs": [text.strip()]}


def test_import_notes_a_nat_network_validate_refuses() -> None:
    """A live NAT network with no address imports as it is, with a note that validate
    refuses it and what to write (the spec says it plainly rather than being changed)."""
    from kvmnet.backend.fake import FakeBackend, FakeNetwork
    from kvmnet.backend.read import read_state
    from kvmnet.service.ops import import_spec

    fake = FakeBackend()
    xml = ("<network><name>kvt-ux-bare</name><forward mode='nat'/>"
           "<bridge name='kvtux-bare0'/></network>")
    fake.networks["kvt-ux-bare"] = FakeNetwork(xml, running=xml)
    spec, notes = import_spec(read_state(fake))
    assert spec.networks["kvt-ux-bare"].mode == "nat"
    assert ("network kvt-ux-bare is mode nat with no address, which validate refuses (it "
            "NATs or routes nothing): give it an ipv4: address, or write mode: isolated"
            ) in notes

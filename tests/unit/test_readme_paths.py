"""README's First steps, run as a reader would run them (issue 19, item 9): the blocks
that use libvirt's test driver as written, the host path's spec validated and planned
on the test driver (its apply, confirm and rollback on a real bridge are
tests/integration/test_hostbridge.py's)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T = "test:///default"


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    steps = text[text.index("\n## First steps\n"):]
    steps = steps[:steps.index("\n## ", 5)]
    part = steps[steps.index(f"\n### {title}\n"):]
    return part[:part.find("\n### ", 5) if "\n### " in part[5:] else len(part)]


def blocks(text: str, lang: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(
        rf"^ *```{lang}\n(.*?)^ *```", text, re.M | re.S)]


def sh(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One line of a README block, by bash, with kvmnet on the PATH (sudo dropped: the
    test driver needs no root)."""
    line = re.sub(r"^sudo ", "", line.split("  #")[0].strip())
    res = subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True,
                         env={"PATH": f"{BIN}:/usr/bin:/bin"}, timeout=120, check=False)
    assert "Traceback" not in res.stderr, res.stderr
    return res


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "examples").mkdir()
    for f in (ROOT / "examples").glob("*.yaml"):
        (tmp_path / "examples" / f.name).write_text(f.read_text())
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "kvmnet.schema.json").write_text(
        (ROOT / "schema" / "kvmnet.schema.json").read_text())
    return tmp_path


def test_try_it_without_a_host(home: Path) -> None:
    demo, by_hand = blocks(section("Try it without a host"), "sh")
    res = sh(demo.strip(), home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Applied " in res.stdout
    # its last plan, in the same connection: nothing left to do
    assert res.stdout.splitlines()[-1].startswith("No changes: test:///default matches the "
                                                  "spec (")
    outs = []
    for line in by_hand.strip().splitlines():
        res = sh(line, home)
        assert res.returncode == 0, f"{line}\n{res.stdout}{res.stderr}"
        outs.append(res.stdout)
    # what the README says: test:///default keeps nothing between commands
    assert "network.create network/mynet1" in outs[1] and "Applied " in outs[2]
    assert "mynet1" not in outs[3] and outs[3].split()[:7] == [
        "NAME", "MODE", "BRIDGE", "SUBNETS", "ACTIVE", "AUTOSTART", "OWNER"]


def test_one_nic_bridged_guests_spec_plans_as_the_readme_says(home: Path) -> None:
    part = section("One NIC, bridged guests")
    [spec] = blocks(part, "yaml")
    fixed = spec.replace("dhcp: true                  # or the two lines below instead",
                         "").replace("# address", "address").replace("# gateway", "gateway")
    for text in (spec, fixed):
        (home / "host.yaml").write_text(text)
        res = sh("kvmnet validate host.yaml", home)
        assert res.returncode == 0, res.stderr
        assert res.stdout == "host.yaml: valid (1 network(s), 1 guest(s), 1 host bridge(s))\n"
        res = sh(f"kvmnet plan host.yaml -c {T}", home)
        assert res.returncode == 0, res.stderr
        assert "host.bridge host/br0: create host bridge br0 with ports enp2s0" in res.stdout
        assert "network.create network/lan" in res.stdout
        assert "guests.web1: guest web1 is not defined" in res.stderr   # never created
    # every command the steps name exists, with the options they use
    for line in ("kvmnet status --help", "kvmnet confirm --help",
                 "kvmnet plan --help | grep -q -- --detailed-exitcode",
                 "kvmnet doctor --help"):
        assert sh(line, home).returncode == 0, line
    assert "kvmnet confirm" in part and "kvmnet status" in part


def test_adopt_my_existing_host(home: Path) -> None:
    [block] = blocks(section("Adopt my existing host"), "sh")
    outs = []
    for line in block.strip().splitlines():
        res = sh(line, home)
        assert res.returncode == 0, f"{line}\n{res.stdout}{res.stderr}"
        outs.append(res.stdout)
    spec = (home / "host.yaml").read_text()
    assert "adopt: true" in spec and "mac: aa:bb:cc:dd:ee:ff" in spec
    plan = outs[2]
    actions = [x for x in plan.splitlines() if re.match(r"  [-+~] \[", x)]
    assert [a.split()[2] for a in actions] == ["network.adopt"], plan
    assert "Applied 1 change(s)" in outs[3]


def test_two_specs_and_removing_everything_are_valid_commands(home: Path) -> None:
    """The files of "Two specs on one host" are valid specs, each with its owner, and
    the commands of both paths exist (their run on a real libvirtd, which keeps what
    each command did: tests/integration/test_readme_owners.py)."""
    specs = blocks(section("Two specs on one host"), "yaml")
    assert len(specs) == 2
    for text, owner in zip(specs, ("team-a", "team-b"), strict=True):
        assert f"owner: {owner}" in text
        (home / f"{owner}.yaml").write_text(text)
        res = sh(f"kvmnet validate {owner}.yaml", home)
        assert res.returncode == 0, res.stderr
    [destroy] = blocks(section("Removing everything"), "sh")
    assert destroy.split()[:2] == ["sudo", "kvmnet"]
    assert sh(f"{destroy.split()[1]} {destroy.split()[2]} --help", home).returncode == 0

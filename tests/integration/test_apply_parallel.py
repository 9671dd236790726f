"""apply --parallel on the lab's real libvirtd: new networks are created side by side on
one connection, and the host ends as a one-at-a-time apply leaves it, also when one of
them fails.

- Eight new networks with --parallel 4 (the `kvmnet` command, --json): every one is
  defined, running, autostarted and kvmnet's; the results come in plan order; a second
  plan is empty. In one process, the same creates on a Connection that counts the
  starts in flight: libvirtd had more than one at a time.
- A failure mid-way: a veth named like the third network's bridge exists in the lab's
  namespace (libvirt cannot make the bridge). --parallel 4 and --parallel 1 each leave
  the first two running, the third defined and stopped, and none after it; one error
  line names the failure; once the link is gone, apply converges.

Names kvt-pf-*, bridges kvtpf*, subnets 10.166.0.0/16, --scope 'kvt-pf-*'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from kvmnet.apply.bridge.options import HostOptions
from kvmnet.apply.runner import run
from kvmnet.backend.libvirt import Connection
from kvmnet.parse.network import parse_network
from kvmnet.service.ops import load_spec, plan_spec
from lab.libvirtd import Libvirtd, iproute

pytestmark = pytest.mark.libvirtd

KVMNET = str(Path(sys.executable).parent / "kvmnet")
PREFIX = "kvt-pf-"
SCOPE = "kvt-pf-*"
URI = "qemu:///system"


def spec_text(n: int) -> str:
    out = ["owner: kvt-pf", "networks:"]
    for i in range(n):
        out += [f"  {PREFIX}n{i}:", "    mode: nat", f"    bridge: kvtpf{i}",
                f"    ipv4: {{address: 10.166.{i}.1/24, dhcp: 10.166.{i}.10-10.166.{i}.20}}"]
    return "\n".join(out) + "\n"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KVMNET, *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


def ours(raw: libvirt.virConnect) -> dict[str, tuple[bool, bool, bool]]:
    """name -> (running, autostart, kvmnet's)"""
    return {n.name(): (bool(n.isActive()), bool(n.autostart()), parse_network(
        n.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)).managed)
        for n in raw.listAllNetworks() if n.name().startswith(PREFIX)}


def plan_is_empty(path: Path) -> None:
    r = cli("plan", str(path), "-c", URI, "--scope", SCOPE, "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr


def test_eight_networks_side_by_side(raw: libvirt.virConnect, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(8))
    r = cli("apply", str(spec), "-c", URI, "--scope", SCOPE, "--yes", "--json",
            "--parallel", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["writes"] == 24
    assert [(x["kind"], x["target"], x["status"]) for x in doc["results"]] == [
        ("network.create", f"network/{PREFIX}n{i}", "done") for i in range(8)]
    assert ours(raw) == {f"{PREFIX}n{i}": (True, True, True) for i in range(8)}
    plan_is_empty(spec)


class Counting(Connection):
    """A real Connection that counts its network starts in flight. The first start waits
    (up to 30 s) until a second one is in flight too: on a loaded machine libvirtd may
    finish one start before the next thread gets there, which says nothing about
    kvmnet; an apply that runs starts one at a time never has a second one, and fails."""

    lock = threading.Lock()
    now = most = 0
    second = threading.Event()

    def start_network(self, name: str) -> None:
        with self.lock:
            type(self).now += 1
            type(self).most = max(self.most, self.now)
            if self.now > 1:
                self.second.set()
        self.second.wait(timeout=30)
        try:
            super().start_network(name)
        finally:
            with self.lock:
                type(self).now -= 1


def test_libvirtd_starts_them_at_once(raw: libvirt.virConnect, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec_text(6))
    spec, pos, warnings = load_spec(spec_file)
    opened = Connection.open(URI)
    conn = Counting(opened.uri, opened.raw)
    try:
        p = plan_spec(spec, pos, str(spec_file), conn, frozenset(), None, warnings,
                      (SCOPE,), None)
        report = run(p.plan, conn, p.live, host=HostOptions(tmp_path, parallel=3))
    finally:
        conn.close()
    assert report.ok and report.writes == 18
    assert 1 < Counting.most <= 3
    assert ours(raw) == {f"{PREFIX}n{i}": (True, True, True) for i in range(6)}
    plan_is_empty(spec_file)


@pytest.fixture
def bridge_taken(libvirtd: Libvirtd) -> Iterator[str]:
    """A veth named like n2's bridge, in the lab's namespace: libvirt cannot make the
    bridge, so n2's start fails."""
    name = "kvtpf2"
    with iproute(libvirtd.netns) as ipr:
        if ipr.link_lookup(ifname=name):
            ipr.link("del", ifname=name)
        ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
    try:
        yield name
    finally:
        _drop(libvirtd, name)


def _drop(libvirtd: Libvirtd, name: str) -> None:
    with iproute(libvirtd.netns) as ipr:
        if ipr.link_lookup(ifname=name):
            ipr.link("del", ifname=name)


@pytest.mark.parametrize("parallel", ["4", "1"])
def test_a_failure_mid_way_stops_where_serial_stops(
        raw: libvirt.virConnect, libvirtd: Libvirtd, tmp_path: Path, bridge_taken: str,
        parallel: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(7))
    r = cli("apply", str(spec), "-c", URI, "--scope", SCOPE, "--yes", "--parallel", parallel)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("kvmnet: error:")]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith(f"kvmnet: error: network.create network/{PREFIX}n2 failed: "
                                f"start network {PREFIX}n2: libvirt says: "), errors[0]
    assert f"network {PREFIX}n2 is defined but not running" in errors[0]
    # what a one-at-a-time apply leaves: n0 and n1 up, n2 defined, nothing after it
    assert ours(raw) == {f"{PREFIX}n0": (True, True, True), f"{PREFIX}n1": (True, True, True),
                         f"{PREFIX}n2": (False, False, True)}
    done = [ln for ln in r.stderr.splitlines() if ln.startswith("[")]
    assert [ln.split(" ... ")[0] for ln in done] == [
        f"[{i + 1}/7] network.create network/{PREFIX}n{i}" for i in range(3)]
    _drop(libvirtd, bridge_taken)
    r = cli("apply", str(spec), "-c", URI, "--scope", SCOPE, "--yes", "--parallel", parallel)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ours(raw) == {f"{PREFIX}n{i}": (True, True, True) for i in range(7)}
    plan_is_empty(spec)

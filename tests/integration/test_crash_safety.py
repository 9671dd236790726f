"""Crash safety against the lab's real libvirtd (issue 9, item 3).

A spec whose plan has 30 actions (4 stopped networks that get a DHCP reservation,
are started and autostarted; 1 reservation made live; 2 networks redefined with a
restart; 1 removed; 5 created; 9 NICs attached to a defined, stopped guest) is
applied by a child `kvmnet apply` process that SIGKILLs itself at one point: before
action k+1, for every k from 0 to 29 (every action boundary), and at 7 write
boundaries inside actions that make several calls (a new network defined but not
started, started but not autostarted; a restart stopped but not redefined,
redefined but not started; a NIC attached but not recorded, three times). The child
is the real CLI (`kvmnet.cli.main`: lock, plan, apply) with one test seam added from
the outside: its progress callback (or Connection.write) is wrapped to kill the
process at the chosen point; kvmnet itself has no test-only branch.

After each kill:
- every kvt-rel-cs- network that exists carries kvmnet's ownership mark (nothing is
  left half made that kvmnet would no longer recognise as its own);
- a second `kvmnet apply` exits 0 without waiting for the dead one's lock;
- `kvmnet plan --detailed-exitcode` then exits 0 (no changes);
- the host is exactly as after an apply that was never interrupted (networks,
  their active/autostart state and XML, the guest's NICs), and every NIC the spec
  gives the guest is recorded as kvmnet's in the domain's metadata (else kvmnet
  could never detach it again).

Names kvt-rel-cs-*, bridges kvtrcs*, subnets 10.235.10-22.0/24, --scope 'kvt-rel-cs-*'
(the other kvt-rel- suites may run at the same time).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from kvmnet.parse.domain import KVMNET_NS, parse_managed_macs
from kvmnet.parse.network import parse_network
from kvmnet.spec.load import load_text
from lab.guest import domain_xml
from lab.libvirtd import Libvirtd, remove_objects
from lab.macs import planned_macs

pytestmark = pytest.mark.libvirtd

KVMNET = str(Path(sys.executable).parent / "kvmnet")
URI = "qemu:///system"
PREFIX = "kvt-rel-cs-"
SCOPE = "kvt-rel-cs-*"
GUEST = "kvt-rel-cs-g1"
MARK = "{https://kvmnet.dev/xmlns/1}managed"
N_ACTIONS = 30


def _net(i: int) -> str:
    return f"10.235.{i}"


# the live state before every run (made with plain libvirt, all with kvmnet's mark)
STOPPED = [f"{PREFIX}s{i}" for i in range(4)]    # defined, not running, autostart off
LIVE = f"{PREFIX}u0"                             # running: a reservation comes live
RESTART = [f"{PREFIX}r{i}" for i in range(2)]    # running: the MTU changes
GONE = f"{PREFIX}x0"                             # not in the spec: removed
CREATED = [f"{PREFIX}c{i}" for i in range(5)]    # new
WITH_IP = STOPPED + [LIVE]                       # (the others have no address: fast)
OCTET = {n: 10 + i for i, n in enumerate(STOPPED + [LIVE] + RESTART + [GONE] + CREATED)}
NICS = 9


def spec_text() -> str:
    lines = ["owner: kvt-rel-cs", "networks:"]
    for name in STOPPED + [LIVE] + RESTART + CREATED:
        x = OCTET[name]
        lines += [f"  {name}:", "    mode: isolated", f"    bridge: kvtrcs{x}"]
        if name in RESTART:
            lines.append("    mtu: 1400")
        if name in WITH_IP:
            lines.append(f"    ipv4:\n      address: {_net(x)}.1/24\n"
                         f"      dhcp: {_net(x)}.100-{_net(x)}.200\n"
                         f"      hosts: [{{mac: '52:54:00:35:{x:02x}:01', ip: {_net(x)}.20, "
                         f"name: h{x}}}]")
    lines += ["guests:", f"  {GUEST}:", "    interfaces:"]
    targets = STOPPED + [LIVE] + CREATED[:2] + RESTART
    lines += [f"      - {{network: {name}}}" for name in targets[:NICS]]
    return "\n".join(lines) + "\n"


def make_pristine(raw: libvirt.virConnect) -> None:
    remove_objects(raw, PREFIX)
    for name in STOPPED + [LIVE] + RESTART + [GONE]:
        x = OCTET[name]
        root = etree.Element("network")
        etree.SubElement(root, "name").text = name
        etree.SubElement(etree.SubElement(root, "metadata"), MARK,
                         nsmap={"kvmnet": KVMNET_NS}, owner="kvt-rel-cs")   # spec_text's
        etree.SubElement(root, "bridge", name=f"kvtrcs{x}", stp="on", delay="0")
        if name in WITH_IP:
            ip = etree.SubElement(root, "ip", address=f"{_net(x)}.1", prefix="24")
            etree.SubElement(etree.SubElement(ip, "dhcp"), "range", start=f"{_net(x)}.100",
                             end=f"{_net(x)}.200")
        net = raw.networkDefineXML(etree.tostring(root, encoding="unicode"))
        if name not in STOPPED:
            net.create()
            net.setAutostart(1)
    log = "/var/tmp/kvmnet-lab/serial/kvt-rel-cs-g1.log"  # never started
    raw.defineXML(domain_xml(GUEST, "/nonexistent/vmlinuz", "/nonexistent/initrd", [], log))


# ------------------------------------------------------------------ the child

RUNNER = r"""
import json, os, signal, sys
mode, at, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
argv = sys.argv[4:]
import kvmnet.cli.live as cli_live
from kvmnet.cli.main import main
from kvmnet.backend.libvirt import Connection

def die():
    os.kill(os.getpid(), signal.SIGKILL)

seen = {"actions": [], "writes": []}
real_progress = cli_live._progress
def progress(i, total, action, res):
    if res is None:
        seen["actions"].append(f"{action.kind} {action.target}")
        if mode == "action" and i == at + 1:
            die()
    real_progress(i, total, action, res)
cli_live._progress = progress

real_write = Connection.write
def write(self, what, fn, raw_errors=False):
    seen["writes"].append(what)
    if mode == "write" and len(seen["writes"]) == at + 1:
        die()
    return real_write(self, what, fn, raw_errors)
Connection.write = write

rc = main(argv)
with open(record, "w") as f:
    json.dump(seen, f)
sys.exit(rc)
"""


@dataclass
class Lab:
    lab: Libvirtd
    raw: libvirt.virConnect
    dir: Path
    spec: Path

    def args(self, cmd: str, *more: str) -> list[str]:
        return [cmd, str(self.spec), "-c", URI, "--netns", self.lab.netns, "--scope", SCOPE,
                *more]

    def child(self, mode: str, at: int) -> tuple[subprocess.CompletedProcess[str], dict]:
        record = self.dir / "record.json"
        record.unlink(missing_ok=True)
        # an action boundary is a point of a one-at-a-time apply: with --parallel new
        # networks overlap (the write-mode kills, inside actions, run with the default)
        serial = ("--parallel", "1") if mode == "action" else ()
        p = subprocess.run([sys.executable, "-c", RUNNER, mode, str(at), str(record),
                            *self.args("apply", "--yes", "--lock-wait", "5", *serial)],
                           capture_output=True, text=True, timeout=300, env=self.env())
        seen = json.loads(record.read_text()) if record.exists() else {}
        return p, seen

    def env(self) -> dict[str, str]:
        return {**os.environ, "KVMNET_LOCK_DIR": str(self.dir / "locks")}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KVMNET, *args], capture_output=True, text=True, timeout=300,
                              env=self.env())


@pytest.fixture(scope="module")
def lab(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    d = tmp_path_factory.mktemp("crash")
    spec = d / "spec.yaml"
    spec.write_text(spec_text())
    with libvirtd.scoped_conn(PREFIX) as raw:
        yield Lab(libvirtd, raw, d, spec)


def snapshot(raw: libvirt.virConnect) -> dict[str, object]:
    """What an apply leaves, without what libvirt makes up (UUIDs, bridge MACs)."""
    nets = {}
    for n in raw.listAllNetworks():
        if not n.name().startswith(PREFIX):
            continue
        parsed = parse_network(n.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
        model = parsed.network.model_dump(mode="json", exclude={"mac"})
        nets[n.name()] = (bool(n.isActive()), bool(n.autostart()), parsed.managed, model)
    dom = raw.lookupByName(GUEST)
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    nics = sorted((i.find("mac").get("address"), i.find("source").get("network"))
                  for i in root.iterfind("devices/interface"))
    try:
        meta = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, KVMNET_NS,
                            libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError:
        meta = None
    return {"networks": nets, "nics": nics, "recorded": sorted(parse_managed_macs(meta))}


@pytest.fixture(scope="module")
def reference(lab: Lab) -> dict[str, object]:
    """An apply that is never interrupted: its actions, its writes, the host after it."""
    make_pristine(lab.raw)
    p, seen = lab.child("none", -1)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(seen["actions"]) == N_ACTIONS, seen["actions"]
    kinds = [a.split()[0] for a in seen["actions"]]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "network.create": 5, "network.update": 5, "network.start": 4,
        "network.autostart": 4, "network.redefine": 2, "network.remove": 1,
        "nic.attach": NICS}
    state = snapshot(lab.raw)
    spec, _ = load_text(spec_text())
    macs = sorted(m for (g, _i), m in planned_macs(spec, URI).items() if g == GUEST)
    assert state["recorded"] == macs
    assert [m for m, _ in state["nics"]] == macs
    assert lab.cli(*lab.args("plan", "--detailed-exitcode")).returncode == 0
    return {"state": state, "actions": seen["actions"], "writes": seen["writes"]}


def _mid_action_writes(writes: list[str]) -> list[int]:
    """Write boundaries inside actions that make several calls (the number of writes
    done before the kill): a new network defined but not started, started but not
    autostarted; a restart stopped but not redefined, redefined but not started; a
    NIC attached but not yet recorded as kvmnet's (the first three)."""
    after = [f"define network {CREATED[0]}", f"start network {CREATED[0]}",
             f"stop network {RESTART[0]}", f"redefine network {RESTART[0]}"]
    picks = [writes.index(w) + 1 for w in after]
    picks += [j + 1 for j, w in enumerate(writes) if w.startswith("attach NIC")][:3]
    return picks


KILL_POINTS = [("action", k) for k in range(N_ACTIONS)]
MID_POINTS = 7  # (checked against the reference run's writes)


def _check_after_kill(lab: Lab, reference: dict[str, object], label: str) -> None:
    # nothing half made that kvmnet would not recognise
    for n in lab.raw.listAllNetworks():
        if n.name().startswith(PREFIX):
            assert parse_network(n.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)).managed, (
                f"{label}: {n.name()} exists without kvmnet's mark")
    again = lab.cli(*lab.args("apply", "--yes", "--lock-wait", "5"))
    assert again.returncode == 0, f"{label}: {again.stdout}{again.stderr}"
    assert "waiting for another kvmnet apply" not in again.stderr
    assert "Traceback" not in again.stderr
    plan = lab.cli(*lab.args("plan", "--detailed-exitcode"))
    assert plan.returncode == 0, f"{label}: {plan.stdout}{plan.stderr}"
    assert snapshot(lab.raw) == reference["state"], label


@pytest.mark.parametrize("mode, at", KILL_POINTS, ids=[f"after-{k}-actions"
                                                       for _, k in KILL_POINTS])
def test_sigkill_at_every_action_boundary(lab: Lab, reference: dict[str, object], mode: str,
                                          at: int) -> None:
    make_pristine(lab.raw)
    p, _ = lab.child(mode, at)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr)
    done = [ln for ln in p.stderr.splitlines() if ln.startswith("[")]
    assert len(done) == at, p.stderr  # exactly k actions had finished
    _check_after_kill(lab, reference, f"killed after {at} actions")


@pytest.mark.parametrize("nth", range(MID_POINTS))
def test_sigkill_inside_an_action(lab: Lab, reference: dict[str, object], nth: int) -> None:
    points = _mid_action_writes(reference["writes"])  # type: ignore[arg-type]
    assert len(points) == MID_POINTS, (points, reference["writes"])
    at = points[nth]
    make_pristine(lab.raw)
    p, _ = lab.child("write", at)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr)
    label = f"killed after write {at} ({reference['writes'][at - 1]})"  # type: ignore[index]
    _check_after_kill(lab, reference, label)

"""Concurrent applies against the lab's real libvirtd (issue 9, item 5).

N = 5 `kvmnet apply` processes of the same file start at once. kvmnet's apply lock
serialises them: the first makes the changes, each of the others waits, plans
against what the first left and finds nothing to do. Every one exits 0 without a
traceback; exactly one applies anything; every DHCP reservation and DNS host is in
libvirt (running and persistent config) and in dnsmasq's files exactly once; the
guest's NICs are attached once each; the plan is empty afterwards. Then the same
with a changed spec (reservations added, changed and removed live: the calls a
second, unserialised apply would repeat and libvirt would refuse), and with two
different specs racing: the host ends up exactly as one of them says.

Names kvt-rel-cc-*, bridges kvtrcc*, subnets 10.235.200.0/22, --scope 'kvt-rel-cc-*'.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from kvmnet.spec.load import load_text
from lab.guest import domain_xml
from lab.libvirtd import DNSMASQ_DIR, Libvirtd
from lab.macs import planned_macs

pytestmark = pytest.mark.libvirtd

KVMNET = str(Path(sys.executable).parent / "kvmnet")
URI = "qemu:///system"
PREFIX = "kvt-rel-cc-"
SCOPE = "kvt-rel-cc-*"
GUEST = f"{PREFIX}g1"
N = 5


def spec(hosts: dict[int, list[int]], dns: bool = True) -> str:
    """Networks 0..2 (10.235.20X.0/24); `hosts` network -> host numbers reserved
    (MAC 52:54:00:35:cc:NN, address .NN, name hNN)."""
    lines = ["networks:"]
    for i in range(3):
        lines += [f"  {PREFIX}n{i}:", "    mode: nat" if i == 0 else "    mode: isolated",
                  f"    bridge: kvtrcc{i}", "    ipv4:",
                  f"      address: 10.235.20{i}.1/24",
                  f"      dhcp: 10.235.20{i}.100-10.235.20{i}.200"]
        hs = hosts.get(i, [])
        if hs:
            lines.append("      hosts:")
            lines += [f"        - {{mac: '52:54:00:35:cc:{h:02x}', ip: 10.235.20{i}.{h}, "
                      f"name: h{h}}}" for h in hs]
        if dns and i == 0:
            lines += ["    dns:", "      hosts:"]
            lines += [f"        - {{ip: 10.235.200.{h}, names: [h{h}.cc.test]}}" for h in hs]
    lines += ["guests:", f"  {GUEST}:", "    interfaces:",
              f"      - {{network: {PREFIX}n0, ipv4: 10.235.200.50}}",
              f"      - {{network: {PREFIX}n1}}"]
    return "\n".join(lines) + "\n"


FIRST = spec({0: [10, 11, 12], 1: [20, 21]})
CHANGED = spec({0: [10, 12, 13], 1: [20, 21, 22], 2: [30]})  # 11 goes, 13/22/30 come


@dataclass
class Lab:
    lab: Libvirtd
    raw: libvirt.virConnect
    dir: Path

    def write(self, text: str, name: str) -> Path:
        """The suite's specs are one owner's, whatever their file is called."""
        p = self.dir / name
        p.write_text(text if "owner:" in text else f"owner: kvt-cc\n{text}")
        return p

    def env(self) -> dict[str, str]:
        return {**os.environ, "KVMNET_LOCK_DIR": str(self.dir / "locks")}

    def args(self, cmd: str, path: Path, *more: str) -> list[str]:
        return [KVMNET, cmd, str(path), "-c", URI, "--netns", self.lab.netns, "--scope", SCOPE,
                *more]

    def at_once(self, paths: list[Path]) -> list[subprocess.CompletedProcess[str]]:
        """Start one apply per path at the same moment; wait for all."""
        procs = [subprocess.Popen(self.args("apply", p, "--yes", "--lock-wait", "300",
                                            "--root", str(self.dir / "root")),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=self.env()) for p in paths]
        out = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=600)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        return out

    def plan_rc(self, path: Path) -> int:
        r = subprocess.run(self.args("plan", path, "--detailed-exitcode"), capture_output=True,
                           text=True, timeout=300, env=self.env())
        assert "Traceback" not in r.stderr, r.stderr
        return r.returncode


@pytest.fixture(scope="module")
def lab(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with libvirtd.scoped_conn(PREFIX) as raw:
        log = f"/var/tmp/kvmnet-lab/serial/{GUEST}.log"  # never started
        raw.defineXML(domain_xml(GUEST, "/nonexistent/vmlinuz", "/nonexistent/initrd", [], log))
        yield Lab(libvirtd, raw, tmp_path_factory.mktemp("concurrency"))


def _all_ok(results: list[subprocess.CompletedProcess[str]]) -> list[str]:
    """Every run exited 0 without a traceback; the summary line of each."""
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr
    return [("applied" if "Applied" in r.stdout else "nothing" if "No changes" in r.stdout
             else "?") for r in results]


def _xml(lab: Lab, name: str, inactive: bool) -> etree._Element:
    net = lab.raw.networkLookupByName(name)
    return etree.fromstring(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE if inactive else 0)
                            .encode())


def assert_state(lab: Lab, text: str) -> None:
    """Every reservation, DNS host and NIC of the spec is there exactly once, live and
    persistent, and in dnsmasq's files; nothing else."""
    wanted, _ = load_text(text)
    macs = planned_macs(wanted, URI, owner="kvt-cc")   # Lab.write's owner
    for name, net in wanted.networks.items():
        assert lab.raw.networkLookupByName(name).isActive()
        want_hosts = sorted((h.mac, str(h.ip)) for h in net.ipv4.hosts) if net.ipv4 else []
        if name == f"{PREFIX}n0":  # + the guest's NIC reservation
            want_hosts = sorted(want_hosts + [(macs[(GUEST, 0)], "10.235.200.50")])
        want_dns = sorted((str(h.ip), tuple(h.names)) for h in net.dns.hosts) if net.dns else []
        for inactive in (False, True):
            root = _xml(lab, name, inactive)
            hosts = sorted((h.get("mac"), h.get("ip")) for h in root.iterfind("ip/dhcp/host"))
            assert hosts == want_hosts, (name, inactive, hosts)
            dns = sorted((h.get("ip"), tuple(n.text for n in h.iterfind("hostname")))
                         for h in root.iterfind("dns/host"))
            assert dns == want_dns, (name, inactive, dns)
        lines = (DNSMASQ_DIR / f"{name}.hostsfile").read_text().splitlines() \
            if want_hosts else []
        assert sorted(ln.split(",")[0] for ln in lines) == [m for m, _ in want_hosts], lines
        if want_dns:
            addn = (DNSMASQ_DIR / f"{name}.addnhosts").read_text().splitlines()
            assert sorted(ln.split("\t")[0] for ln in addn if ln) == [ip for ip, _ in want_dns]
    dom = lab.raw.lookupByName(GUEST)
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    nics = sorted(i.find("mac").get("address") for i in root.iterfind("devices/interface"))
    assert nics == sorted(m for (g, _), m in macs.items() if g == GUEST)


def test_five_applies_of_one_file_at_once(lab: Lab) -> None:
    path = lab.write(FIRST, "first.yaml")
    t0 = time.monotonic()
    results = lab.at_once([path] * N)
    took = time.monotonic() - t0
    kinds = _all_ok(results)
    assert sorted(kinds) == ["applied"] + ["nothing"] * (N - 1), kinds
    waited = sum(1 for r in results if "waiting for another kvmnet apply" in r.stderr)
    assert waited >= 1, [r.stderr for r in results]  # the lock was contended, and held
    assert lab.plan_rc(path) == 0
    assert_state(lab, FIRST)
    assert took < 300


def test_five_applies_of_a_change_at_once(lab: Lab) -> None:
    """Live updates (networkUpdate add / modify / delete): repeated by a second apply
    that did not wait, libvirt would refuse a duplicate or a missing reservation."""
    lab.at_once([lab.write(FIRST, "first.yaml")])  # (converged start)
    path = lab.write(CHANGED, "changed.yaml")
    kinds = _all_ok(lab.at_once([path] * N))
    assert sorted(kinds) == ["applied"] + ["nothing"] * (N - 1), kinds
    assert lab.plan_rc(path) == 0
    assert_state(lab, CHANGED)


def test_two_specs_racing_end_as_one_of_them(lab: Lab) -> None:
    lab.at_once([lab.write(FIRST, "first.yaml")])
    a, b = lab.write(FIRST, "a.yaml"), lab.write(CHANGED, "b.yaml")
    kinds = _all_ok(lab.at_once([a, b, a, b, a]))
    assert "applied" in kinds and "?" not in kinds
    rc = (lab.plan_rc(a), lab.plan_rc(b))
    assert sorted(rc) == [0, 2], rc  # exactly one of them describes the host
    assert_state(lab, FIRST if rc[0] == 0 else CHANGED)

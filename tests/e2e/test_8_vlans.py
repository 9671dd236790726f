"""Guests on VLANs behind one VLAN-aware bridge, with real QEMU guests and real leases
(issue 20, points 3 and 4), on libvirt 9 (kvmnet sets the taps' VLANs: at attach and,
through its libvirt qemu hook, at every guest start) and on the Debian 13 lab's
libvirt 11 (libvirt sets them from the NIC's `<vlan>`).

The topology, in the lab libvirtd's namespace and one of this file's own:

    kvt-vl-lan (namespace)                       kvmnet-lab (the lab libvirtd's)
      trunk0.100 10.160.100.1/24 + dnsmasq         kvtvbr0: vlan_filtering, pvid 1
      trunk0.200 10.160.200.1/24 + dnsmasq           kvtv-up0 (trunk: 100, 200 tagged)
      trunk0 ------------------------------------ kvtv-up0
                                                     kvt-vl-g100: access VLAN 100 (bridge:)
                                                     kvt-vl-g200: portgroup v200 (network:)
                                                     kvt-vl-trunk: trunk 100, 200 (network:)

Where the kernel has no 802.1Q (CONFIG_VLAN_8021Q off: no VLAN-aware bridge, no VLAN
sub-interface can exist), the traffic tests skip and say so; the refusal, the trunk
guest's own VLAN interfaces and libvirt running the hook still run, and
tests/integration/test_vlans_libvirt_kernelvm.py runs this whole file in Debian's
kernel (tests/lab/kernelvm.py), where none skips.

The bridge is made here (host bridges' VLAN filtering is issue 20's host side); its
pvid 1 is the uplink's untagged LAN, where no DHCP server runs: a guest whose VLAN
leaked there would get no lease. The LAN namespace answers ARP only for an address of
the interface asked on (arp_ignore=1) and does not route, so an ARP reply is an L2
proof: a guest gets one from its own VLAN's host and from no address of the other VLAN.
The trunk guest (kvmnet.vlans=100,200) makes eth0.100 and eth0.200 and leases on both:
it sees tagged frames of both VLANs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvmnet.model.vlan import Vlans
from lab.guest import (
    domain_xml,
    guest_files,
    run_url,
    serial_log_path,
    start_guest,
    wait_for_serial,
)
from lab.libvirtd import URI, Libvirtd

from .e2elab import describe, http_get, kvmnet, ns_exec, run
from .test_6_forwards import restart_lab_libvirtd

pytestmark = pytest.mark.e2e

PREFIX = "kvt-vl-"
SCOPE = f"{PREFIX}*"
NS_LAN = "kvt-vl-lan"
BRIDGE = "kvtvbr0"           # VLAN-aware
PLAIN = "kvtvbr1"            # not VLAN-aware: a VLAN on it is refused
UPLINK = "kvtv-up0"          # its port; the peer "trunk0" is in kvt-vl-lan
NET = "kvt-vl-lan"           # mode bridge over kvtvbr0, with portgroup v200
G100, G200, TRUNK = "kvt-vl-g100", "kvt-vl-g200", "kvt-vl-trunk"
GUESTS = (G100, G200, TRUNK)
LAN = {100: "10.160.100", 200: "10.160.200"}
RUN = Path("/run/kvt-vl")
# a guest's boot (in tests/integration/test_vlans_libvirt_kernelvm.py's kernel VM the
# guests are emulated twice: it says how long to wait there)
BOOT = float(os.environ.get("KVMNET_GUEST_BOOT", "180"))
HOOK = Path("/etc/libvirt/hooks/qemu.d/kvmnet-vlans")

SPEC: dict[str, Any] = {
    "owner": "kvt-vl",
    "networks": {NET: {"mode": "bridge", "bridge": BRIDGE,
                       "portgroups": {"v200": {"vlan": 200}}}},
    "guests": {
        G100: {"interfaces": [{"bridge": BRIDGE, "vlan": 100}]},
        G200: {"interfaces": [{"network": NET, "portgroup": "v200"}]},
        TRUNK: {"interfaces": [{"network": NET, "vlans": [100, 200]}]},
    },
}


@dataclass
class Lab:
    lv: Libvirtd
    conn: Any
    work: Path
    native: bool
    no_vlans: str = ""       # why this kernel cannot switch VLANs ('' when it can)
    doms: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)

    def spec(self, name: str, spec: dict[str, Any]) -> Path:
        p = self.work / name
        p.write_text(yaml.safe_dump(spec, sort_keys=False))
        return p

    def plan(self, path: Path) -> tuple[int, dict[str, Any]]:
        proc = kvmnet("plan", str(path), "-c", URI, "--netns", self.lv.netns, "--scope",
                      SCOPE, "--json", "--detailed-exitcode")
        assert proc.returncode in (0, 2), describe(proc)
        return proc.returncode, json.loads(proc.stdout)

    def assert_no_changes(self, path: Path) -> None:
        rc, plan = self.plan(path)
        assert rc == 0, json.dumps(plan["actions"], indent=1)

    def apply(self, path: Path, *more: str) -> dict[str, Any]:
        proc = kvmnet("apply", str(path), "-c", URI, "--netns", self.lv.netns, "--scope",
                      SCOPE, "--yes", "--json", *more, timeout=300)
        assert proc.returncode == 0, describe(proc)
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def lab_run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return self.lv.netns_exec(args, check=False)

    def tap(self, guest: str) -> str:
        xml = self.doms[guest].XMLDesc(0)
        m = re.search(r"<target dev='([^']+)'", xml)
        assert m, xml
        return m.group(1)

    def table(self, dev: str) -> set[tuple[int, bool, bool]]:
        """dev's VLAN table: (vid, pvid, untagged), from `bridge -j vlan show`."""
        out = self.lab_run(["bridge", "-j", "vlan", "show", "dev", dev])
        assert out.returncode == 0, describe(out)
        rows = json.loads(out.stdout or "[]")
        got = set()
        for row in rows:
            for v in row.get("vlans", []):
                flags = v.get("flags", [])
                got.add((v["vlan"], "PVID" in flags, "Egress Untagged" in flags))
        return got

    def guest_sh(self, guest: str, cmd: str) -> tuple[int, str]:
        """Run cmd in guest (its busybox httpd's CGI), from its VLAN's side of the LAN."""
        r = http_get(NS_LAN, run_url(self.ips[guest], cmd), timeout=20)
        m = re.search(r"KVMNET-RC (\d+)", r.stdout)
        assert m, describe(r)
        return int(m.group(1)), r.stdout

    def arping(self, guest: str, ip: str) -> bool:
        rc, _ = self.guest_sh(guest, f"arping -c 2 -w 3 -I eth0 {ip}")
        return rc == 0


def _sh(ns: str | None, *args: str) -> None:
    p = run(list(args)) if ns is None else ns_exec(ns, list(args))
    assert p.returncode == 0, describe(p)


def _cleanup(lv: Libvirtd, conn: Any) -> None:
    """Our leftovers by name: domains, the network, namespace, links, dnsmasq."""
    for d in conn.listAllDomains():
        if d.name().startswith(PREFIX):
            if d.isActive():
                d.destroy()
            d.undefine()
    for n in conn.listAllNetworks():
        if n.name().startswith(PREFIX):
            if n.isActive():
                n.destroy()
            n.undefine()
    for pidfile in RUN.glob("*.pid") if RUN.exists() else ():
        try:
            pid = int(pidfile.read_text().strip())
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"dnsmasq"):
                os.kill(pid, 15)
        except (OSError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)
    run(["ip", "netns", "del", NS_LAN])
    try:  # our hook, if a run of this checkout left it (apply removes it otherwise)
        if sys.executable in HOOK.read_text():
            HOOK.unlink()
    except OSError:
        pass
    for link in (UPLINK, BRIDGE, PLAIN):
        lv.netns_exec(["ip", "link", "del", link], check=False)


def _make_lan(lv: Libvirtd) -> str:
    """The plain bridge always; the VLAN-aware one, its trunk and the LAN namespace's
    VLANs where the kernel has 802.1Q. '' when it does, else why not."""
    RUN.mkdir(parents=True, exist_ok=True)
    lab = ["ip", "netns", "exec", lv.netns]
    _sh(None, *lab, "ip", "link", "add", PLAIN, "type", "bridge", "stp_state", "0")
    _sh(None, *lab, "ip", "link", "set", PLAIN, "up")
    made = run([*lab, "ip", "link", "add", BRIDGE, "type", "bridge", "vlan_filtering", "1",
                "vlan_default_pvid", "1", "stp_state", "0"])
    if made.returncode != 0:
        return (f"this kernel cannot make a bridge with vlan_filtering ({made.stderr.strip()}"
                "): it was built without 802.1Q (CONFIG_VLAN_8021Q and "
                "CONFIG_BRIDGE_VLAN_FILTERING)")
    _sh(None, "ip", "netns", "add", NS_LAN)
    _sh(None, *lab, "ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "trunk0",
        "netns", NS_LAN)
    _sh(None, *lab, "ip", "link", "set", UPLINK, "master", BRIDGE)
    for vid in LAN:
        _sh(None, *lab, "bridge", "vlan", "add", "dev", UPLINK, "vid", str(vid))
    for link in (BRIDGE, UPLINK):
        _sh(None, *lab, "ip", "link", "set", link, "up")
    _sh(NS_LAN, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.ip_forward=0")
    _sh(NS_LAN, "ip", "link", "set", "lo", "up")
    _sh(NS_LAN, "ip", "link", "set", "trunk0", "up")
    for vid, net in LAN.items():
        dev = f"trunk0.{vid}"
        _sh(NS_LAN, "ip", "link", "add", "link", "trunk0", "name", dev, "type", "vlan", "id",
            str(vid))
        _sh(NS_LAN, "ip", "addr", "add", f"{net}.1/24", "dev", dev)
        _sh(NS_LAN, "ip", "link", "set", dev, "up")
        _sh(NS_LAN, "dnsmasq", f"--interface={dev}", "--bind-interfaces", "--port=0",
            "--except-interface=lo", f"--dhcp-range={net}.50,{net}.99,255.255.255.0,1h",
            "--dhcp-option=3", "--dhcp-option=6", f"--pid-file={RUN}/dnsmasq-{vid}.pid",
            f"--dhcp-leasefile={RUN}/leases-{vid}", "--conf-file=/dev/null", "--user=root")
    return ""


@pytest.fixture(scope="module")
def vl(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    conn = libvirtd.open()
    _cleanup(libvirtd, conn)
    native = conn.getLibVersion() >= 11_000_000
    lab = Lab(libvirtd, conn, tmp_path_factory.mktemp("vl"), native)
    try:
        lab.no_vlans = _make_lan(libvirtd)
        kernel, initrd = guest_files()
        for g in GUESTS:
            lab.logs[g] = serial_log_path(g)
            extra = "kvmnet.vlans=100,200" if g == TRUNK else ""
            lab.doms[g] = conn.defineXML(domain_xml(g, kernel, initrd, [], lab.logs[g],
                                                    extra_cmdline=extra))
        yield lab
    finally:
        try:
            lab.conn = libvirtd.open()  # (a test may have restarted libvirtd)
            if HOOK.exists() or any(d.name().startswith(PREFIX)
                                    for d in lab.conn.listAllDomains()):
                kvmnet("apply", str(lab.spec("empty.yaml", {"owner": "kvt-vl"})), "-c", URI,
                       "--netns", libvirtd.netns, "--scope", SCOPE, "--yes", "--json",
                       "--allow-destroy", timeout=300)
            _cleanup(libvirtd, lab.conn)
        finally:
            lab.conn.close()
            conn.close()


def _boot(lab: Lab, *guests: str) -> None:
    for g in guests:
        serial_log_path(g)  # (a fresh log: the markers are this boot's)
        lab.doms[g].create()
    for g in guests:
        alive = lab.doms[g].isActive
        if g == TRUNK:
            for vid, net in LAN.items():
                m = wait_for_serial(lab.logs[g], rf"KVMNET-LEASE ({re.escape(net)}\.\d+) "
                                    rf"\S+ eth0\.{vid}\b", BOOT, alive=alive)
                lab.ips[f"{g}.{vid}"] = m.group(1)
            lab.ips[g] = lab.ips[f"{g}.100"]
            continue
        m = wait_for_serial(lab.logs[g], r"KVMNET-LEASE (\S+) \S+ eth0\b", BOOT, alive=alive)
        lab.ips[g] = m.group(1)


def _restart(lab: Lab, g: str) -> None:
    lab.doms[g].destroy()
    _boot(lab, g)


def _in(ip: str, vid: int) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(f"{LAN[vid]}.0/24")


def _tables(lab: Lab) -> None:
    assert lab.table(lab.tap(G100)) == {(100, True, True)}
    assert lab.table(lab.tap(G200)) == {(200, True, True)}
    assert lab.table(lab.tap(TRUNK)) == {(100, False, False), (200, False, False)}


def _own_vlan_only(lab: Lab) -> None:
    """Each access guest leased from its own VLAN's server, is reached there, gets ARP
    answers from its own VLAN's host and from nothing of the other VLAN."""
    assert _in(lab.ips[G100], 100) and _in(lab.ips[G200], 200), lab.ips
    for g, own, other in ((G100, 100, 200), (G200, 200, 100)):
        body = http_get(NS_LAN, f"http://{lab.ips[g]}/").stdout
        assert f"KVMNET-GUEST {g}" in body
        assert lab.arping(g, f"{LAN[own]}.1"), f"{g} gets no ARP answer on VLAN {own}"
        assert not lab.arping(g, f"{LAN[other]}.1"), f"{g} reached VLAN {other}'s host"
    assert not lab.arping(G100, lab.ips[G200]), "g100 reached g200 across VLANs"


def need_vlans(vl: Lab) -> None:
    if vl.no_vlans:
        pytest.skip(vl.no_vlans)


def test_guests_lease_and_reach_only_their_own_vlan(vl: Lab) -> None:
    need_vlans(vl)
    path = vl.spec("vlans.yaml", SPEC)
    rc, plan = vl.plan(path)
    assert rc == 2
    kinds = [a["kind"] for a in plan["actions"]]
    assert kinds.count("nic.attach") == 3
    assert ("host.vlans" in kinds) == (not vl.native)
    vl.apply(path)
    if not vl.native:  # libvirt reads hook scripts when it starts
        assert HOOK.exists() and os.access(HOOK, os.X_OK)
        why = restart_lab_libvirtd(vl.lv)
        if why:
            pytest.skip(f"the qemu hook needs the lab libvirtd restarted: {why}")
        vl.conn = vl.lv.open()
        vl.doms = {g: vl.conn.lookupByName(g) for g in GUESTS}
    _boot(vl, *GUESTS)
    _tables(vl)
    _own_vlan_only(vl)
    # the trunk guest: a lease on each VLAN, tagged (eth0.100, eth0.200)
    assert _in(vl.ips[f"{TRUNK}.100"], 100) and _in(vl.ips[f"{TRUNK}.200"], 200)
    vl.assert_no_changes(path)


def test_a_vlan_taken_off_a_tap_shows_in_the_plan_and_apply_puts_it_back(vl: Lab) -> None:
    need_vlans(vl)
    path = vl.work / "vlans.yaml"
    tap = vl.tap(G100)
    _sh(None, "ip", "netns", "exec", vl.lv.netns, "bridge", "vlan", "del", "dev", tap,
        "vid", "100")
    assert vl.table(tap) == set()
    rc, plan = vl.plan(path)
    assert rc == 2
    assert len(plan["actions"]) == 1, json.dumps(plan["actions"], indent=1)
    (act,) = plan["actions"]
    assert act["kind"] == "nic.vlans" and act["impact"] == "live"
    assert act["details"] == [f"~ VLANs on tap {tap} no VLAN -> 100 (pvid, untagged) "
                              "(changed outside kvmnet)"]
    vl.apply(path)
    assert vl.table(tap) == {(100, True, True)}
    assert "KVMNET-GUEST" in http_get(NS_LAN, f"http://{vl.ips[G100]}/").stdout
    vl.assert_no_changes(path)


def test_guests_keep_their_vlans_after_a_libvirtd_and_a_guest_restart(vl: Lab) -> None:
    need_vlans(vl)
    path = vl.work / "vlans.yaml"
    why = restart_lab_libvirtd(vl.lv)
    if why:
        pytest.skip(f"not restarting the shared lab libvirtd: {why}")
    vl.conn = vl.lv.open()
    vl.doms = {g: vl.conn.lookupByName(g) for g in GUESTS}
    _tables(vl)
    _own_vlan_only(vl)
    vl.assert_no_changes(path)
    for g in (G100, G200):
        _restart(vl, g)
    _tables(vl)
    _own_vlan_only(vl)
    vl.assert_no_changes(path)


def test_a_vlan_on_a_bridge_without_vlan_filtering_is_refused_before_any_change(
        vl: Lab) -> None:
    bad = {"owner": "kvt-vl", "guests": {
        G100: {"interfaces": [{"bridge": PLAIN, "vlan": 100}]}}}
    path = vl.spec("bad.yaml", bad)
    before = vl.doms[G100].XMLDesc(0)
    proc = kvmnet("apply", str(path), "-c", URI, "--netns", vl.lv.netns, "--scope", SCOPE,
                  "--yes")
    assert proc.returncode == 1, describe(proc)
    assert f"bridge {PLAIN} on {URI} does not filter VLANs" in proc.stderr
    assert "bad.yaml:" in proc.stderr and "Traceback" not in proc.stderr
    assert vl.doms[G100].XMLDesc(0) == before
    if not vl.no_vlans:  # (and the guest on the VLAN-aware bridge kept its VLAN)
        assert vl.table(vl.tap(G100)) == {(100, True, True)}


def test_removing_the_spec_detaches_and_removes_the_hook(vl: Lab) -> None:
    """An empty spec removes the owner's network, which has running guests on it: refused
    without --allow-destroy, and nothing changes; with it the guests' NICs are detached,
    the network goes, and (libvirt 9) kvmnet's hook with them."""
    need_vlans(vl)
    empty = vl.spec("empty.yaml", {"owner": "kvt-vl"})
    hooked = HOOK.exists()
    before = {g: vl.doms[g].XMLDesc(0) for g in GUESTS}
    proc = kvmnet("apply", str(empty), "-c", URI, "--netns", vl.lv.netns, "--scope", SCOPE,
                  "--yes")
    assert proc.returncode == 1, describe(proc)
    assert f"network {NET} (guests attached: {G200}, {TRUNK})" in proc.stderr, describe(proc)
    assert "--allow-destroy" in proc.stderr
    assert {g: vl.doms[g].XMLDesc(0) for g in GUESTS} == before
    assert HOOK.exists() == hooked and NET in vl.conn.listNetworks()
    vl.apply(empty, "--allow-destroy")
    assert not HOOK.exists()
    assert NET not in vl.conn.listNetworks() + vl.conn.listDefinedNetworks()
    for g in GUESTS:
        assert "<interface" not in vl.doms[g].XMLDesc(0)


def test_a_trunk_guest_makes_and_leases_on_its_vlan_interfaces(vl: Lab) -> None:
    """The guest side of a trunk, on any host kernel: kvmnet.vlans=100,200 loads the
    guest's 802.1Q modules and makes eth0.100 and eth0.200, each asked for a lease (none
    answers on the plain bridge: each says so)."""
    name = f"{PREFIX}probe"
    dom, log = start_guest(vl.conn, name, [{"bridge": PLAIN}],
                           extra_cmdline="kvmnet.vlans=100,200")
    try:
        wait_for_serial(log, r"KVMNET-UP ", BOOT, alive=dom.isActive)
        text = log.read_text(errors="replace")
        assert "KVMNET-ERROR" not in text, text
        for vid in LAN:
            assert re.search(rf"KVMNET-NOLEASE eth0\.{vid}\b", text), text
    finally:
        dom.destroy()


def test_libvirt_runs_the_vlan_hook_at_guest_start_with_the_tap(vl: Lab) -> None:
    """libvirt 9, on any kernel: kvmnet's qemu hook, once libvirtd has read it, runs at
    the guest's start with its tap and kvmnet's record, and refuses a tap that is not on
    a VLAN-aware bridge (here: the plain one; the record is written by hand, since plan
    refuses such a NIC) rather than set anything there."""
    if vl.native:
        pytest.skip("libvirt 11 sets the VLANs itself: kvmnet writes no hook there")
    from kvmnet.backend import vlan_hook
    from kvmnet.model.live import NicRecord
    from kvmnet.parse.domain import KVMNET_NS, nic_records_xml

    name, mac = f"{PREFIX}hook", "52:54:00:16:00:01"
    kernel, initrd = guest_files()
    log = serial_log_path(name)
    xml = domain_xml(name, kernel, initrd, [{"bridge": PLAIN, "mac": mac}], log)
    dom = vl.conn.defineXML(xml)
    record = nic_records_xml([NicRecord(mac, "kvt-vl", 0, Vlans((), 100))])
    dom.setMetadata(2, record, "kvmnet", KVMNET_NS, 2)  # (ELEMENT, AFFECT_CONFIG)
    hook_log = Path("/var/log/kvmnet/hook.log")
    start = hook_log.stat().st_size if hook_log.exists() else 0
    try:
        vlan_hook.install(Path("/"))  # (or it is there already)
        assert vlan_hook.hook_status(Path("/")) == "ok"
        why = restart_lab_libvirtd(vl.lv)
        if why:
            pytest.skip(f"the hook needs the lab libvirtd restarted: {why}")
        vl.conn = vl.lv.open()
        vl.doms = {g: vl.conn.lookupByName(g) for g in GUESTS}
        dom = vl.conn.lookupByName(name)
        dom.create()
        tap = re.search(r"<target dev='([^']+)'", dom.XMLDesc(0))
        assert tap, dom.XMLDesc(0)
        with hook_log.open() as f:
            f.seek(start)
            lines = [ln for ln in f.read().splitlines() if f" {name} " in ln]
        assert any(f"{name} start: {tap.group(1)}: FAILED: not setting VLANs on "
                   f"{tap.group(1)}: it is not a port of a bridge with vlan_filtering "
                   f"({PLAIN})" in ln for ln in lines), lines
        assert vl.table(tap.group(1)) in (set(), {(1, True, True)})  # nothing set
    finally:
        vlan_hook.remove(Path("/"))
        if dom.isActive():
            dom.destroy()
        dom.undefine()

"""plan / apply / import against the lab's real libvirtd (namespace kvmnet-lab).

Issue 3, item 10 and friends: the libvirt part of a seed-like spec (an adopted
NAT network, a routed one, and a `mode: bridge` network over a host bridge the
test makes), then idempotence, live DHCP reservations, drift, restarts, import,
ownership, guest NICs, --allow-destroy, the apply lock and one-line errors.

The lab is shared with other suites (tests/e2e) that run at the same time, so
everything here is named ``kvt-it-*`` (bridges ``kvti*``, subnets in
10.210.0.0/16), kvmnet runs with ``--scope 'kvt-it-*'`` (it never plans to remove
another suite's networks), and cleanup removes only ``kvt-it-*`` objects (not
``lv_conn``, which removes every new ``kvt-`` object, other suites' too).

kvmnet's core runs in-process on one kvmnet Connection where libvirt write
calls are counted; the CLI runs as a subprocess where exit codes and messages
matter. Hand edits ("plain libvirt") go through a separate raw connection.
"""

from __future__ import annotations

import json
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

from kvmnet.apply.runner import Report, run
from kvmnet.backend import lock as kvmnet_lock
from kvmnet.backend.libvirt import Connection
from kvmnet.plan import Action
from kvmnet.service.ops import plan_file
from kvmnet.spec.load import load, load_text
from lab.guest import domain_xml
from lab.libvirtd import (
    DNSMASQ_DIR,
    Libvirtd,
    dnsmasq_pids,
    iproute,
    ns_links,
    remove_objects,
)
from lab.macs import planned_macs
from lab.netxml import network_xml

pytestmark = pytest.mark.libvirtd

KVMNET = str(Path(sys.executable).parent / "kvmnet")
URI = "qemu:///system"
PREFIX = "kvt-it-"
SCOPE = "kvt-it-*"

NAT, NAT_BR = "kvt-it-default", "kvtivirbr0"  # the seed's "default": libvirt made it
RT, RT_BR = "kvt-it-mynet1", "kvtibr1"  # the seed's routed mynet1
LAN, HOST_BR = "kvt-it-lan", "kvtibr0"  # the seed's lan over host bridge br0
GUEST = "kvt-it-g1"
LAN_MAC = "52:54:00:1d:0a:01"
FOREIGN_MAC = "52:54:00:1d:0a:99"  # a NIC kvmnet did not attach
OUR_LINKS = (HOST_BR, "kvtitaken0")  # (kvtitaken0's veth peer goes with it)

NAT_IP = "10.210.122.1/24"
NAT_DHCP = ("10.210.122.2", "10.210.122.254")
RT_IP = "10.210.88.89/29"
RT_DHCP = ("10.210.88.90", "10.210.88.94")

BASE = f"""\
networks:
  {NAT}:
    adopt: true
    mode: nat
    bridge: {NAT_BR}
    ipv4: {{address: {NAT_IP}, dhcp: {NAT_DHCP[0]}-{NAT_DHCP[1]}}}
  {RT}:
    mode: route
    bridge: {RT_BR}
    ipv4: {{address: {RT_IP}, dhcp: {RT_DHCP[0]}-{RT_DHCP[1]}}}
  {LAN}:
    mode: bridge
    bridge: {HOST_BR}
guests:
  {GUEST}:
    interfaces:
      - {{network: {NAT}, model: virtio, ipv4: 10.210.122.10}}
      - {{network: {LAN}, mac: "{LAN_MAC}"}}
"""
RT_LINE = f"    ipv4: {{address: {RT_IP}, dhcp: {RT_DHCP[0]}-{RT_DHCP[1]}}}\n"
LAN_NIC_LINE = f'      - {{network: {LAN}, mac: "{LAN_MAC}"}}\n'


# ------------------------------------------------------------------ helpers


@dataclass
class Lab:
    lab: Libvirtd
    raw: libvirt.virConnect  # plain libvirt: the test's own (hand) edits
    kc: Connection  # kvmnet's connection: its writes are counted
    dir: Path

    @property
    def netns(self) -> str:
        return self.lab.netns

    def spec(self, text: str, name: str = "spec.yaml") -> Path:
        """The suite's specs are one owner's, whatever their file is called."""
        p = self.dir / name
        p.write_text(text if "owner:" in text else f"owner: {PREFIX}suite\n{text}")
        return p

    def plan(self, path: Path) -> list[Action]:
        """The plan's (not skipped) actions, made in-process."""
        p = plan_file(path, self.kc, frozenset(), self.netns, (SCOPE,)).plan
        return [a for a in p.actions if not a.skipped]

    def apply(self, path: Path, allow_destroy: bool = False) -> Report:
        p = plan_file(path, self.kc, frozenset(), self.netns, (SCOPE,))
        report = run(p.plan, self.kc, p.live, allow_destroy, netns=self.netns)
        assert report.ok, [(r.action.target, r.message) for r in report.results]
        return report

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([KVMNET, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {})})

    def cli_plan(self, path: Path, *more: str) -> subprocess.CompletedProcess:
        return self.cli("plan", str(path), "-c", URI, "--netns", self.netns, "--scope", SCOPE,
                        *more)

    def cli_apply(self, path: Path, *more: str, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess:
        return self.cli("apply", str(path), "-c", URI, "--netns", self.netns, "--scope",
                        SCOPE, "--yes", *more, env=env)

    def net(self, name: str) -> libvirt.virNetwork:
        return self.raw.networkLookupByName(name)

    def xml(self, name: str, inactive: bool = False) -> etree._Element:
        flags = libvirt.VIR_NETWORK_XML_INACTIVE if inactive else 0
        return etree.fromstring(self.net(name).XMLDesc(flags).encode())

    def dom_nics(self) -> dict[str, etree._Element]:
        """The guest's persistent <interface>s by MAC."""
        dom = self.raw.lookupByName(GUEST)
        root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        return {i.find("mac").get("address"): i for i in root.iterfind("devices/interface")}

    def links(self) -> dict[str, dict]:
        return ns_links(self.netns)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Exit 1, no traceback, and exactly one error line on stderr (warnings may precede)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def nat_nic_mac() -> str:
    """The MAC kvmnet gives the guest's first NIC (the spec has none)."""
    return planned_macs(load_text(BASE)[0], URI, owner=f"{PREFIX}suite")[(GUEST, 0)]


def _remove_links(netns: str, names: tuple[str, ...] = OUR_LINKS) -> None:
    with iproute(netns) as ipr:
        for name in names:
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)


def _pristine(lab: Lab) -> None:
    """No kvt-it- objects but the seed's starting point: libvirt's own NAT network
    (unmanaged, active, autostart) and the guest, defined, with one NIC of its own."""
    remove_objects(lab.raw, PREFIX)
    net = lab.raw.networkDefineXML(network_xml(NAT, NAT_BR, NAT_IP, dhcp=NAT_DHCP))
    net.create()
    net.setAutostart(1)
    log = "/var/tmp/kvmnet-lab/serial/kvt-it-g1.log"  # never started: no files needed
    lab.raw.defineXML(domain_xml(GUEST, "/nonexistent/vmlinuz", "/nonexistent/initrd",
                                 [{"bridge": HOST_BR, "mac": FOREIGN_MAC}], log))


@pytest.fixture(scope="module")
def lab(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The pristine seed situation, plus the host bridge (the seed's br0) in the netns."""
    kc = Connection.open(URI)
    try:
        with libvirtd.scoped_conn(PREFIX) as raw:  # (kvt-it-* objects go before the links)
            lab = Lab(libvirtd, raw, kc, tmp_path_factory.mktemp("live"))
            _remove_links(libvirtd.netns)
            with libvirtd.iproute() as ipr:
                ipr.link("add", ifname=HOST_BR, kind="bridge")
                idx = ipr.link_lookup(ifname=HOST_BR)[0]
                ipr.addr("add", index=idx, address="10.210.1.1", prefixlen=24)
                ipr.link("set", index=idx, state="up")
            _pristine(lab)
            yield lab
    finally:
        try:
            _remove_links(libvirtd.netns)
        finally:
            kc.close()


@pytest.fixture
def pristine(lab: Lab) -> Lab:
    managed = b"kvmnet.dev" in lab.net(NAT).XMLDesc(0).encode() if _exists(lab, NAT) else True
    others = [n.name() for n in lab.raw.listAllNetworks() if n.name().startswith(PREFIX)]
    if managed or others != [NAT] or len(lab.dom_nics()) != 1:
        _pristine(lab)
    return lab


def _exists(lab: Lab, name: str) -> bool:
    return name in {n.name() for n in lab.raw.listAllNetworks()}


@pytest.fixture
def seeded(lab: Lab) -> Lab:
    """The seed-like spec applied (converged: usually no write call at all)."""
    lab.apply(lab.spec(BASE, "base.yaml"))
    return lab


# ------------------------------------------------------------------ tests


def test_seed_apply_makes_every_network_live(pristine: Lab):
    lab = pristine
    nat_index = lab.links()[NAT_BR]["index"]
    nat_dnsmasq = dnsmasq_pids(NAT)
    assert nat_dnsmasq

    path = lab.spec(BASE, "base.yaml")
    got = {(a.kind, a.target): a for a in lab.plan(path)}
    assert got[("network.adopt", f"network/{NAT}")].impact == "live"  # no restart
    assert ("network.create", f"network/{RT}") in got
    assert ("network.create", f"network/{LAN}") in got
    attaches = [k for k in got if k[0] == "nic.attach"]
    assert len(attaches) == 2

    report = lab.apply(path)
    assert report.writes > 0

    links = lab.links()
    for name, bridge, addr, dhcp in ((NAT, NAT_BR, NAT_IP, NAT_DHCP),
                                     (RT, RT_BR, RT_IP, RT_DHCP)):
        net = lab.net(name)
        assert net.isActive() and net.autostart(), name
        assert net.bridgeName() == bridge
        assert links[bridge]["kind"] == "bridge"
        assert addr in links[bridge]["addresses"], (name, links[bridge])
        rng = lab.xml(name).find("ip/dhcp/range")
        assert (rng.get("start"), rng.get("end")) == dhcp
        assert dnsmasq_pids(name), f"no dnsmasq for {name}"
        assert lab.xml(name, inactive=True).find(
            "metadata/{https://kvmnet.dev/xmlns/1}managed") is not None
    lan = lab.net(LAN)
    assert lan.isActive() and lan.autostart()
    assert lab.xml(LAN).find("forward").get("mode") == "bridge"
    assert lab.xml(LAN).find("bridge").get("name") == HOST_BR
    assert links[HOST_BR]["index"] and not dnsmasq_pids(LAN)

    # adopting the existing NAT network did not restart it
    assert lab.links()[NAT_BR]["index"] == nat_index
    assert dnsmasq_pids(NAT) == nat_dnsmasq
    # the guest's reservation, live and persistent
    mac = nat_nic_mac()
    for inactive in (False, True):
        hosts = [(h.get("mac"), h.get("ip")) for h in
                 lab.xml(NAT, inactive).iterfind("ip/dhcp/host")]
        assert hosts == [(mac, "10.210.122.10")]
    assert mac in (DNSMASQ_DIR / f"{NAT}.hostsfile").read_text()
    # the guest's NICs, in its persistent config, with kvmnet's MACs; its own NIC stays
    nics = lab.dom_nics()
    assert set(nics) == {mac, LAN_MAC, FOREIGN_MAC}
    assert nics[mac].find("source").get("network") == NAT
    assert nics[mac].find("model").get("type") == "virtio"
    assert nics[LAN_MAC].find("source").get("network") == LAN
    assert nics[FOREIGN_MAC].find("source").get("bridge") == HOST_BR


def test_reapply_makes_no_write_call(seeded: Lab):
    lab = seeded
    path = lab.spec(BASE, "base.yaml")
    assert lab.plan(path) == []
    assert lab.apply(path).writes == 0
    proc = lab.cli_plan(path, "--detailed-exitcode")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No changes" in proc.stdout
    # the guest's own NIC is mentioned, not touched
    assert FOREIGN_MAC in proc.stderr and "left alone" in proc.stderr
    proc = lab.cli_apply(path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["writes"] == 0


def test_dhcp_reservation_is_one_live_update(seeded: Lab):
    lab = seeded
    host = "52:54:00:1d:0a:42"
    text = BASE.replace(RT_LINE, (
        f"    ipv4:\n      address: {RT_IP}\n      dhcp: {RT_DHCP[0]}-{RT_DHCP[1]}\n"
        f"      hosts: [{{mac: '{host}', name: db, ip: 10.210.88.92}}]\n"))
    assert text != BASE
    path = lab.spec(text, "reservation.yaml")
    (act,) = lab.plan(path)
    assert (act.kind, act.target, act.impact) == ("network.update", f"network/{RT}", "live")
    assert [(u.command, u.section) for u in act.updates] == [("add-last", "ip-dhcp-host")]

    index, pids = lab.links()[RT_BR]["index"], dnsmasq_pids(RT)
    uuid = lab.net(RT).UUIDString()
    assert lab.apply(path).writes == 2   # the networkUpdate, and kvmnet's record of it
    assert lab.links()[RT_BR]["index"] == index, "the bridge was recreated"
    assert dnsmasq_pids(RT) == pids, "dnsmasq was restarted"
    assert lab.net(RT).UUIDString() == uuid and lab.net(RT).isActive()
    assert f"{host},10.210.88.92,db" in (DNSMASQ_DIR / f"{RT}.hostsfile").read_text()
    for inactive in (False, True):
        hosts = [(h.get("mac"), h.get("ip"), h.get("name"))
                 for h in lab.xml(RT, inactive).iterfind("ip/dhcp/host")]
        assert hosts == [(host, "10.210.88.92", "db")]
    assert lab.plan(path) == []
    # and out again: one more live update, still no restart
    assert lab.apply(lab.spec(BASE, "base.yaml")).writes == 2
    assert lab.links()[RT_BR]["index"] == index and dnsmasq_pids(RT) == pids
    assert host not in (DNSMASQ_DIR / f"{RT}.hostsfile").read_text()


def test_first_dns_host_comes_and_goes_live(seeded: Lab):
    lab = seeded
    dns = "    dns: {hosts: [{ip: 10.210.88.93, names: [db.it.test]}]}\n"
    text = BASE.replace(RT_LINE, RT_LINE + dns)
    path = lab.spec(text, "dns.yaml")
    (act,) = lab.plan(path)
    assert (act.kind, act.impact) == ("network.update", "live")
    assert [(u.command, u.section) for u in act.updates] == [("add-last", "dns-host")]
    index, pids = lab.links()[RT_BR]["index"], dnsmasq_pids(RT)
    addnhosts = DNSMASQ_DIR / f"{RT}.addnhosts"
    assert lab.apply(path).writes == 2
    assert "10.210.88.93\tdb.it.test" in addnhosts.read_text()
    assert lab.plan(path) == []
    assert lab.apply(lab.spec(BASE, "base.yaml")).writes == 2  # the last one goes: live too
    assert "db.it.test" not in addnhosts.read_text()
    assert lab.links()[RT_BR]["index"] == index and dnsmasq_pids(RT) == pids


def test_hand_edit_is_drift_and_apply_converges(seeded: Lab):
    lab = seeded
    root = lab.xml(RT, inactive=True)
    root.find("ip/dhcp/range").set("end", "10.210.88.93")
    etree.SubElement(root, "mtu", size="1400")  # not in the spec at all: still drift
    lab.raw.networkDefineXML(etree.tostring(root, encoding="unicode"))  # `virsh net-edit`

    path = lab.spec(BASE, "base.yaml")
    proc = lab.cli_plan(path, "--detailed-exitcode")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"network.redefine network/{RT}" in proc.stdout
    assert "10.210.88.93" in proc.stdout and "10.210.88.94" in proc.stdout
    (act,) = lab.plan(path)
    assert act.kind == "network.redefine" and act.impact == "restart"
    assert [d for d in act.details if "dnsmasq" not in d] == [
        "- MTU 1400 (changed outside kvmnet)",
        f"~ DHCP range {RT_DHCP[0]}-10.210.88.93 -> {RT_DHCP[0]}-{RT_DHCP[1]} (changed "
        "outside kvmnet)"]

    lab.apply(path)
    assert lab.plan(path) == []
    for inactive in (False, True):
        assert lab.xml(RT, inactive).find("ip/dhcp/range").get("end") == RT_DHCP[1]
        assert lab.xml(RT, inactive).find("mtu") is None
    assert lab.net(RT).isActive() and dnsmasq_pids(RT)


def test_mtu_change_restarts_the_network(seeded: Lab):
    lab = seeded
    text = BASE.replace(f"    bridge: {RT_BR}\n", f"    bridge: {RT_BR}\n    mtu: 1400\n")
    path = lab.spec(text, "mtu.yaml")
    (act,) = lab.plan(path)
    assert (act.kind, act.impact) == ("network.redefine", "restart")
    assert "restart" in act.summary
    assert "+ MTU 1400" in act.details
    proc = lab.cli_plan(path)
    assert proc.returncode == 0 and "[restart]" in proc.stdout, proc.stdout

    lab.apply(path)
    assert lab.net(RT).isActive()
    assert lab.links()[RT_BR]["mtu"] == 1400
    assert lab.xml(RT).find("mtu").get("size") == "1400"
    assert dnsmasq_pids(RT)
    assert lab.plan(path) == []


def test_import_then_plan_is_empty(seeded: Lab):
    lab = seeded
    proc = lab.cli("import", "-c", URI, "--netns", lab.netns, NAT, RT, LAN)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    path = lab.spec(proc.stdout, "imported.yaml")
    spec, _ = load(path)
    assert set(spec.networks) == {NAT, RT, LAN}
    assert {n.mac for n in spec.guests[GUEST].interfaces} == {nat_nic_mac(), LAN_MAC}
    plan = lab.cli_plan(path, "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert lab.plan(path) == []


def test_unmanaged_network_is_left_alone(seeded: Lab):
    lab = seeded
    name = "kvt-it-unmanaged"
    net = lab.raw.networkDefineXML(network_xml(name, "kvtiun0", "10.210.50.1/24", forward=None))
    try:
        net.create()
        before = (net.XMLDesc(0), net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
        text = BASE.replace("guests:\n", f"  {name}:\n    mode: isolated\n    bridge: kvtiun0\n"
                            "    ipv4: {address: 10.210.50.1/24}\nguests:\n")
        proc = lab.cli_plan(lab.spec(text, "unmanaged.yaml"))
        line = one_error_line(proc)
        assert name in line and "not managed by kvmnet" in line and "adopt: true" in line
        assert net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE) == before[1]

        # apply other specs (a change, then back): the unmanaged network is not touched
        moved = BASE.replace(f"{{network: {LAN}, mac", f"{{network: {RT}, mac")
        proc = lab.cli_apply(lab.spec(moved, "moved.yaml"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert name not in proc.stdout
        proc = lab.cli_apply(lab.spec(BASE, "base.yaml"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (net.XMLDesc(0), net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)) == before
        assert net.isActive()
    finally:
        remove_objects(lab.raw, name)


def test_guest_nic_attach_update_detach(seeded: Lab):
    lab = seeded
    mac = nat_nic_mac()
    assert set(lab.dom_nics()) == {mac, LAN_MAC, FOREIGN_MAC}

    moved = lab.spec(BASE.replace(f"{{network: {LAN}, mac", f"{{network: {RT}, mac"),
                     "moved.yaml")
    acts = lab.plan(moved)
    assert [(a.kind, a.target) for a in acts] == [("nic.update", f"guest/{GUEST}/{LAN_MAC}")]
    assert lab.apply(moved).writes == 1
    nics = lab.dom_nics()
    assert nics[LAN_MAC].find("source").get("network") == RT
    assert set(nics) == {mac, LAN_MAC, FOREIGN_MAC}

    gone = lab.spec(BASE.replace(LAN_NIC_LINE, ""), "gone.yaml")
    acts = lab.plan(gone)
    assert [(a.kind, a.target) for a in acts] == [("nic.detach", f"guest/{GUEST}/{LAN_MAC}")]
    lab.apply(gone)
    nics = lab.dom_nics()
    assert set(nics) == {mac, FOREIGN_MAC}, "only kvmnet's NIC goes; the guest's own stays"
    assert lab.plan(gone) == []

    # back in the spec: attached again, same MAC
    base = lab.spec(BASE, "base.yaml")
    assert [a.kind for a in lab.plan(base)] == ["nic.attach"]
    lab.apply(base)
    assert lab.dom_nics()[LAN_MAC].find("source").get("network") == LAN


def test_removing_a_network_with_a_guest_needs_allow_destroy(seeded: Lab):
    lab = seeded
    text = BASE.split(f"  {LAN}:\n")[0]  # the NAT and routed networks, no LAN, no guests
    path = lab.spec(text, "no-lan.yaml")
    proc = lab.cli_apply(path)
    line = one_error_line(proc)
    assert "--allow-destroy" in line and LAN in line and GUEST in line
    assert _exists(lab, LAN) and lab.net(LAN).isActive()

    proc = lab.cli_apply(path, "--allow-destroy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not _exists(lab, LAN)
    # the other networks were not touched
    assert lab.net(NAT).isActive() and lab.net(RT).isActive()


def test_a_second_apply_fails_clearly_while_one_holds_the_lock(
        seeded: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    lab = seeded
    lock_dir = tmp_path / "locks"
    monkeypatch.setattr(kvmnet_lock, "LOCK_DIR", str(lock_dir))
    env = {"KVMNET_LOCK_DIR": str(lock_dir)}
    path = lab.spec(BASE, "base.yaml")
    with kvmnet_lock.apply_lock(URI, 0):
        t0 = time.monotonic()
        proc = lab.cli_apply(path, "--lock-wait", "1", env=env)
        waited = time.monotonic() - t0
    line = one_error_line(proc)
    assert f"pid {os.getpid()}" in line and "another kvmnet apply" in line
    assert waited >= 1.0
    proc = lab.cli_apply(path, "--lock-wait", "1", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bridge_name_taken_by_a_host_link(lab: Lab):
    with lab.lab.iproute() as ipr:
        ipr.link("add", ifname="kvtitaken0", kind="veth", peer="kvtitaken1")
    try:
        path = lab.spec("networks:\n  kvt-it-taken:\n    mode: nat\n    bridge: kvtitaken0\n"
                        "    ipv4: {address: 10.210.60.1/24}\n", "taken.yaml")
        line = one_error_line(lab.cli_plan(path))
        assert "kvtitaken0 already exists" in line and "pick another name" in line
        assert f"{path}:5:" in line     # (the suite's owner: line comes first)
        assert not _exists(lab, "kvt-it-taken")
    finally:
        _remove_links(lab.netns, ("kvtitaken0",))


@pytest.mark.parametrize(("uri", "words"), [
    ("qemu+unix:///system?socket=/nonexistent", "libvirtd is not running"),
    ("bogus:///x", "unknown URI"),
])
def test_connection_errors_are_one_line(lab: Lab, uri: str, words: str):
    proc = lab.cli("plan", str(lab.spec(BASE, "base.yaml")), "-c", uri)
    line = one_error_line(proc)
    assert uri in line and words in line



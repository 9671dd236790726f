"""Guests' VLANs on a real VLAN-aware bridge, run INSIDE the kernel VM
(tests/lab/kernelvm.py) by tests/integration/test_vlans_kernelvm.py: this machine's
kernel has no 802.1Q, Debian's has. Not collected on its own (no test_ prefix).

What libvirt 9 leaves to kvmnet, done by kvmnet's own code (kvmnet.backend.vlans.set_port,
read_vlans, and the qemu hook's kvmnet.backend.vlan_hook.run_vlan_hook) on veths that play
the guests' taps, each with its peer in a namespace that plays the guest:

    kvt-vl-lan: trunk0.100 10.160.100.1/24 + dnsmasq, trunk0.200 10.160.200.1/24 + dnsmasq
      trunk0 === kvtvup0 (trunk 100, 200) in kvtvbr0 (vlan_filtering, pvid 1)
    kvt-vl-g100 eth0 --- kvtvt100 (access 100)   kvt-vl-g200 eth0 --- kvtvt200 (access 200)
    kvt-vl-gtr eth0 (eth0.100, eth0.200) --- kvtvttr (trunk 100, 200)

The LAN namespace answers ARP only for its own interface's address (arp_ignore=1) and
does not route: an ARP reply is an L2 proof.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kvmnet.backend.vlan_hook import run_vlan_hook
from kvmnet.backend.vlans import read_vlans, set_port
from kvmnet.errors import LiveError
from kvmnet.model.live import NicRecord
from kvmnet.model.vlan import Vlans
from kvmnet.parse.domain import KVMNET_NS, nic_records_xml

LAN, G100, G200, GTR = "kvt-vl-lan", "kvt-vl-g100", "kvt-vl-g200", "kvt-vl-gtr"
BR, PLAIN, UP = "kvtvbr0", "kvtvbr1", "kvtvup0"
TAPS = {G100: "kvtvt100", G200: "kvtvt200", GTR: "kvtvttr"}
NET = {100: "10.160.100", 200: "10.160.200"}
UDHCPC = """#!/bin/sh
case "$1" in
  bound|renew) ip addr add "$ip/$mask" dev "$interface"; echo "LEASE $interface $ip" ;;
esac
exit 0
"""


def sh(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd}: {p.returncode} {p.stdout} {p.stderr}")
    return p.stdout + p.stderr


def lease(ns: str, dev: str) -> str | None:
    out = sh("busybox", "udhcpc", "-i", dev, "-n", "-q", "-f", "-t", "4", "-T", "1",
             "-s", "/tmp/kvt-vl-udhcpc.sh", ns=ns, check=False)
    m = re.search(r"LEASE \S+ (\S+)", out)
    return m.group(1) if m else None


def arping(ns: str, dev: str, ip: str) -> bool:
    out = subprocess.run(["ip", "netns", "exec", ns, "busybox", "arping", "-c", "2", "-w",
                          "3", "-I", dev, ip], capture_output=True, text=True, timeout=30)
    return out.returncode == 0


@pytest.fixture(scope="module")
def lab() -> dict[str, str]:
    Path("/tmp/kvt-vl-udhcpc.sh").write_text(UDHCPC)
    Path("/tmp/kvt-vl-udhcpc.sh").chmod(0o755)
    for ns in (LAN, G100, G200, GTR):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("ip", "link", "add", BR, "type", "bridge", "vlan_filtering", "1", "stp_state", "0")
    sh("ip", "link", "add", PLAIN, "type", "bridge", "stp_state", "0")
    sh("ip", "link", "add", UP, "type", "veth", "peer", "name", "trunk0", "netns", LAN)
    sh("ip", "link", "set", UP, "master", BR)
    for vid in NET:
        sh("bridge", "vlan", "add", "dev", UP, "vid", str(vid))
    for g, tap in TAPS.items():
        sh("ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", g)
        sh("ip", "link", "set", tap, "master", BR)
        sh("ip", "link", "set", tap, "up")
        sh("ip", "link", "set", "eth0", "up", ns=g)
    for link in (BR, PLAIN, UP):
        sh("ip", "link", "set", link, "up")
    sh("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.ip_forward=0", ns=LAN)
    sh("ip", "link", "set", "trunk0", "up", ns=LAN)
    for vid, net in NET.items():
        dev = f"trunk0.{vid}"
        sh("ip", "link", "add", "link", "trunk0", "name", dev, "type", "vlan", "id",
           str(vid), ns=LAN)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", dev, ns=LAN)
        sh("ip", "link", "set", dev, "up", ns=LAN)
        sh("dnsmasq", f"--interface={dev}", "--bind-interfaces", "--port=0",
           f"--dhcp-range={net}.50,{net}.99,255.255.255.0,1h", "--dhcp-option=3",
           "--dhcp-option=6", f"--pid-file=/run/kvt-vl-{vid}.pid", "--conf-file=/dev/null",
           f"--dhcp-leasefile=/tmp/kvt-vl-{vid}.leases", ns=LAN)
    return {}


def test_untagged_taps_reach_no_vlan_before_kvmnet_sets_them(lab: dict[str, str]) -> None:
    # a new port is on the bridge's default VLAN 1, where no server runs
    assert read_vlans(None, False, None).ports[TAPS[G100]] == {(1, True, True)}
    assert lease(G100, "eth0") is None


def test_access_guests_lease_and_reach_only_their_own_vlan(lab: dict[str, str]) -> None:
    assert set_port(TAPS[G100], Vlans((), 100))
    assert set_port(TAPS[G200], Vlans((), 200))
    ports = read_vlans(None, False, None).ports
    assert ports[TAPS[G100]] == {(100, True, True)}
    assert ports[TAPS[G200]] == {(200, True, True)}
    ip100, ip200 = lease(G100, "eth0"), lease(G200, "eth0")
    assert ip100 and ip100.startswith(NET[100] + "."), ip100
    assert ip200 and ip200.startswith(NET[200] + "."), ip200
    lab.update(ip100=ip100, ip200=ip200)
    assert arping(G100, "eth0", f"{NET[100]}.1")
    assert arping(G200, "eth0", f"{NET[200]}.1")
    assert not arping(G100, "eth0", f"{NET[200]}.1")   # the other VLAN's host
    assert not arping(G200, "eth0", f"{NET[100]}.1")
    assert not arping(G100, "eth0", ip200)             # the other VLAN's guest
    assert not arping(G200, "eth0", ip100)


def test_a_trunk_guest_sees_tagged_frames_of_both_vlans(lab: dict[str, str]) -> None:
    assert set_port(TAPS[GTR], Vlans((100, 200), None))
    assert read_vlans(None, False, None).ports[TAPS[GTR]] == {(100, False, False),
                                                              (200, False, False)}
    for vid, net in NET.items():
        dev = f"eth0.{vid}"
        sh("ip", "link", "add", "link", "eth0", "name", dev, "type", "vlan", "id", str(vid),
           ns=GTR)
        sh("ip", "link", "set", dev, "up", ns=GTR)
        ip = lease(GTR, dev)
        assert ip and ip.startswith(net + "."), (dev, ip)
    assert lease(GTR, "eth0") is None                 # no native VLAN: nothing untagged


def test_a_vlan_taken_off_by_hand_is_seen_and_the_hook_puts_it_back(
        lab: dict[str, str]) -> None:
    tap = TAPS[G100]
    sh("bridge", "vlan", "del", "dev", tap, "vid", "100")
    assert read_vlans(None, False, None).ports[tap] == frozenset()   # plan's drift
    assert not arping(G100, "eth0", f"{NET[100]}.1")
    mac = "52:54:00:16:01:00"
    rec = nic_records_xml([NicRecord(mac, "kvt-vl", 0, Vlans((), 100))])
    xml = (f"<domain><name>g</name><metadata><kvmnet:nics xmlns:kvmnet='{KVMNET_NS}'>"
           + rec.removeprefix("<nics>").removesuffix("</nics>").replace("<nic ",
                                                                         "<kvmnet:nic ")
           + f"</kvmnet:nics></metadata><devices><interface type='bridge'><mac address="
           f"'{mac}'/><source bridge='{BR}'/><target dev='{tap}'/></interface></devices>"
           "</domain>")
    line = run_vlan_hook(xml, "g", "start")            # what libvirt's start runs
    assert f"{tap} on {BR}: no VLAN -> 100 (pvid, untagged)" in line, line
    assert read_vlans(None, False, None).ports[tap] == {(100, True, True)}
    assert arping(G100, "eth0", f"{NET[100]}.1")


def test_a_tap_on_a_bridge_without_vlan_filtering_is_refused(lab: dict[str, str]) -> None:
    sh("ip", "link", "set", TAPS[G200], "nomaster")
    sh("ip", "link", "set", TAPS[G200], "master", PLAIN)
    with pytest.raises(LiveError, match="not a port of a bridge with vlan_filtering"):
        set_port(TAPS[G200], Vlans((), 200))
    for bad in ("0", "4095"):
        with pytest.raises((ValueError, LiveError)):
            set_port(TAPS[G100], Vlans((), int(bad)))

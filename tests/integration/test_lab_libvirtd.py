"""The lab works: a real libvirtd in namespace kvmnet-lab makes NAT networks there, and a
tiny QEMU guest gets its reserved DHCP lease and answers HTTP from inside the namespace."""

from __future__ import annotations

import re
import time
from pathlib import Path

import libvirt
import pytest
from lxml import etree
from pyroute2 import IPRoute

from lab.guest import start_guest, wait_for_serial
from lab.libvirtd import (
    NETNS_RUN_DIR,
    all_pids,
    netns_ident,
    pid_netns,
    proc_cmdline,
    quiet_libvirt,
)
from lab.netxml import dhcp_host_xml, network_xml

pytestmark = pytest.mark.libvirtd

NET = "kvt-lab-nat"
BRIDGE = "kvt-lab0"
GUEST = "kvt-lab-g1"
GUEST_MAC = "52:54:00:c8:4d:32"
GUEST_IP = "10.200.77.50"
DNSMASQ_CONF = f"/var/lib/libvirt/dnsmasq/{NET}.conf"
LIVE_AND_CONFIG = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG


def dnsmasq_pids(conf: str) -> list[int]:
    """Pids whose command line names the dnsmasq conf file CONF."""
    return [
        pid
        for pid in all_pids()
        if any(conf in arg for arg in proc_cmdline(pid))
        and Path(proc_cmdline(pid)[0]).name == "dnsmasq"
    ]


@pytest.fixture
def nat_net(lv_conn: libvirt.virConnect) -> libvirt.virNetwork:
    """Persistent NAT network kvt-lab-nat on 10.200.77.1/24, started (lv_conn removes it)."""
    xml = network_xml(NET, BRIDGE, "10.200.77.1/24", dhcp=("10.200.77.100", "10.200.77.200"))
    net = lv_conn.networkDefineXML(xml)
    net.create()
    return net


def test_libvirtd_is_reachable_and_lives_in_the_namespace(libvirtd, lv_conn):
    assert libvirtd.uri == "qemu:///system"
    assert lv_conn.getURI() == "qemu:///system"
    assert lv_conn.getLibVersion() >= 9_000_000
    assert isinstance(lv_conn.listAllNetworks(), list)
    ns = netns_ident(NETNS_RUN_DIR / libvirtd.netns)
    assert ns is not None and pid_netns(libvirtd.pid) == ns
    assert pid_netns(libvirtd.pid) != pid_netns(1), "libvirtd must not run in the host netns"
    assert libvirtd.ns_links()["lo"]["up"]


def test_nat_network_makes_bridge_and_dnsmasq_only_in_the_namespace(libvirtd, lv_conn, nat_net):
    assert nat_net.isActive() and nat_net.isPersistent()
    assert nat_net.bridgeName() == BRIDGE

    links = libvirtd.ns_links()
    assert BRIDGE in links, f"{BRIDGE} not in namespace {libvirtd.netns}: {sorted(links)}"
    assert links[BRIDGE]["kind"] == "bridge"
    assert "10.200.77.1/24" in links[BRIDGE]["addresses"]
    with IPRoute() as host:
        assert not host.link_lookup(ifname=BRIDGE), f"{BRIDGE} leaked into the host namespace"

    pids = dnsmasq_pids(DNSMASQ_CONF)
    assert pids, f"no dnsmasq running with {DNSMASQ_CONF}"
    lab_ns = netns_ident(NETNS_RUN_DIR / libvirtd.netns)
    assert all(pid_netns(pid) == lab_ns for pid in pids)
    assert "dhcp-range=10.200.77.100,10.200.77.200" in Path(DNSMASQ_CONF).read_text()

    # removing the network removes bridge, dnsmasq and the host config file
    nat_net.destroy()
    nat_net.undefine()
    assert BRIDGE not in libvirtd.ns_links()
    deadline = time.monotonic() + 5
    while dnsmasq_pids(DNSMASQ_CONF) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not dnsmasq_pids(DNSMASQ_CONF)
    assert not Path(f"/etc/libvirt/qemu/networks/{NET}.xml").exists()
    assert NET not in {n.name() for n in lv_conn.listAllNetworks()}


@pytest.mark.e2e
def test_guest_gets_reserved_lease_and_serves_http(libvirtd, lv_conn, nat_net, record_property):
    nat_net.update(
        libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        dhcp_host_xml(GUEST_MAC, GUEST_IP, GUEST),
        LIVE_AND_CONFIG,
    )
    host = etree.fromstring(nat_net.XMLDesc()).find("ip/dhcp/host")
    assert host is not None and host.get("ip") == GUEST_IP and host.get("mac") == GUEST_MAC

    t0 = time.monotonic()
    dom, log = start_guest(lv_conn, GUEST, [{"network": NET, "mac": GUEST_MAC}])
    lease_marker = rf"KVMNET-LEASE {re.escape(GUEST_IP)} {GUEST_MAC}"
    wait_for_serial(log, lease_marker, timeout=120, alive=dom.isActive)
    boot_to_lease = time.monotonic() - t0
    record_property("boot_to_lease_s", round(boot_to_lease, 2))
    print(f"\nlab guest {GUEST}: boot to DHCP lease {boot_to_lease:.1f}s")

    # the guest's tap is in the bridge, inside the namespace
    links = libvirtd.ns_links()
    assert any(link["master"] == BRIDGE for link in links.values()), "no port in the bridge"

    got = libvirtd.netns_exec(
        ["wget", "--no-proxy", "-q", "-t", "1", "-T", "5", "-O", "-", f"http://{GUEST_IP}/"],
        check=False,
    )
    assert got.returncode == 0, f"wget failed: {got.stderr}"
    assert f"KVMNET-GUEST {GUEST}" in got.stdout

    leases = {}
    deadline = time.monotonic() + 10
    while GUEST_IP not in leases and time.monotonic() < deadline:
        leases = {lease["ipaddr"]: lease["mac"] for lease in nat_net.DHCPLeases()}
        time.sleep(0.2)
    assert leases.get(GUEST_IP) == GUEST_MAC

    dom.destroy()
    with quiet_libvirt(), pytest.raises(libvirt.libvirtError):
        lv_conn.lookupByName(GUEST)  # transient: gone once destroyed

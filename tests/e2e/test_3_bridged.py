"""Bridged (the seed's lan): a `mode: bridge` network over the host bridge kvtebr0,
whose veth "NIC" leads to the LAN namespace. The guest's lease comes from the LAN's own
DHCP server, and the LAN's neighbour table holds the guest's own MAC."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest

from lab.libvirtd import iproute

from .e2elab import HOST_BRIDGE, LAN_DHCP, LAN_ROUTER, NS_LAN, RUN

GUEST = "kvt-e2e-br1"
MAC = "52:54:00:c5:97:8b"  # given in the spec


@pytest.mark.e2e
def test_guest_tap_is_a_port_of_the_host_bridge(world):
    ports = [n for n, link in world.libvirtd.ns_links().items()
             if link["master"] == HOST_BRIDGE and link["mac"] == "fe" + MAC[2:]]
    assert ports, f"no tap of {GUEST} in {HOST_BRIDGE}: {world.libvirtd.ns_links()}"


@pytest.mark.e2e
def test_guest_gets_its_lease_from_the_lans_dhcp_server(world):
    ip, mac = world.leases[GUEST]
    assert mac == MAC
    lo, hi = (ipaddress.ip_address(a) for a in LAN_DHCP)
    assert lo <= ipaddress.ip_address(ip) <= hi, f"{ip} is not from the LAN's pool {LAN_DHCP}"
    assert f"lease of {ip} obtained from {LAN_ROUTER}" in world.console(GUEST)
    log = (RUN / "lan-dnsmasq.log").read_text()
    assert re.search(rf"DHCPACK\(lan0\) {re.escape(ip)} {MAC}", log), log[-2000:]


@pytest.mark.e2e
def test_lan_sees_the_guests_own_mac(world):
    ip = world.ip(GUEST)
    got = world.http(NS_LAN, f"http://{ip}/")
    assert got.returncode == 0, f"LAN -> guest {ip}: {got.stderr}"
    assert got.stdout.strip() == f"KVMNET-GUEST {GUEST}"
    with iproute(NS_LAN) as ipr:
        neigh = {n.get("NDA_DST"): n.get("NDA_LLADDR")
                 for n in ipr.get_neighbours(family=socket.AF_INET)}
    assert neigh.get(ip) == MAC, f"LAN neighbours: {neigh}"

"""NAT (the seed's default network): DHCP reservation and pool, host -> guest, guest ->
"internet" with masquerade, and no way in from outside."""

from __future__ import annotations

import ipaddress
import re
import uuid

import pytest

from .e2elab import INET_ADDR, NS_INET, PEER_PORT, UPLINK_HOST

NAT = "kvt-e2e-nat"
NAT_SUBNET = "10.231.10.0/24"
RESERVED = "10.231.10.10"


@pytest.mark.e2e
def test_reserved_and_pool_leases_from_libvirts_dnsmasq(world):
    ip1, mac1 = world.leases["kvt-e2e-nat1"]
    assert ip1 == RESERVED, f"kvt-e2e-nat1 ({mac1}) got {ip1}, not its reservation {RESERVED}"
    ip2, mac2 = world.leases["kvt-e2e-nat2"]
    assert ipaddress.ip_address("10.231.10.100") <= ipaddress.ip_address(ip2) \
        <= ipaddress.ip_address("10.231.10.199"), f"kvt-e2e-nat2 got {ip2}: not in the pool"
    # libvirt's own dnsmasq handed them out: its lease database has both
    leases = {x["mac"]: x["ipaddr"] for x in world.conn.networkLookupByName(NAT).DHCPLeases()}
    assert leases.get(mac1) == ip1 and leases.get(mac2) == ip2, leases


@pytest.mark.e2e
def test_host_reaches_guests(world):
    for g in ("kvt-e2e-nat1", "kvt-e2e-nat2"):
        got = world.http(world.lab, f"http://{world.ip(g)}/")
        assert got.returncode == 0, f"host -> {g}: {got.stderr}"
        assert got.stdout.strip() == f"KVMNET-GUEST {g}"


@pytest.mark.e2e
def test_guest_reaches_internet_masqueraded_as_host_uplink(world):
    path = f"/nat-{uuid.uuid4().hex[:8]}"
    rc, out = world.guest_fetch("kvt-e2e-nat1", f"http://{INET_ADDR}:{PEER_PORT}{path}")
    assert rc == 0, f"guest -> internet failed: {out}"
    # what the internet namespace saw as the source: the host's uplink address
    assert out.strip() == f"PEER {UPLINK_HOST} {path}"
    assert (UPLINK_HOST, path) in world.peers(NS_INET)
    assert not any(src == RESERVED for src, _ in world.peers(NS_INET))


@pytest.mark.e2e
def test_connection_from_internet_to_guest_is_refused(world):
    # even with a route to the NAT subnet via the host, libvirt rejects new connections
    world.ns(NS_INET, ["ip", "route", "add", NAT_SUBNET, "via", UPLINK_HOST])
    try:
        got = world.http(NS_INET, f"http://{RESERVED}/", timeout=3)
        assert got.returncode != 0, f"the internet reached a NATed guest: {got.stdout}"
        # libvirt's LIBVIRT_FWI chain answers new connections with icmp-port-unreachable
        assert "connection refused" in got.stderr.lower(), got.stderr
    finally:
        world.ns(NS_INET, ["ip", "route", "del", NAT_SUBNET])
    # the guest itself still answers the host: the refusal is the firewall, not a dead guest
    assert world.http(world.lab, f"http://{RESERVED}/").returncode == 0



@pytest.mark.e2e
def test_leases_cli_in_a_pipe_shows_the_expiry_as_a_time(world):
    """`kvmnet leases NET` as a script reads it: plain columns, a header in capitals, each
    DHCP lease with its expiry as a local time and how far off it is (issue 19, item 6)."""
    from .e2elab import kvmnet

    ip1, mac1 = world.leases["kvt-e2e-nat1"]
    res = kvmnet("leases", NAT, "-c", world.libvirtd.uri)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NETWORK", "MAC", "IP", "HOSTNAME", "EXPIRES"]
    assert not set(res.stdout) & set("─│┃━┏┓└┘")
    row = next(line for line in lines if mac1 in line)
    assert f"{ip1}/24" in row.split()
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in [0-9dhms]+\)$", row), row
    wide = kvmnet("leases", NAT, "-c", world.libvirtd.uri, "-o", "wide", "--no-headers")
    assert wide.returncode == 0 and "NETWORK" not in wide.stdout
    assert "dhcp-lease" in next(x for x in wide.stdout.splitlines() if mac1 in x).split()[-1]

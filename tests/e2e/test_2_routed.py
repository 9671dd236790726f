"""Routed (the seed's mynet1): the guest's lease is in the routed subnet; the LAN router,
given the route `kvmnet render` wrote (used as is), reaches the guest directly and each
side sees the other's own address (no NAT); without that route they cannot talk."""

from __future__ import annotations

import ipaddress
import shlex
import uuid

import pytest

from .e2elab import LAN_HOST, LAN_ROUTER, NS_LAN, PEER_PORT, describe, kvmnet, peer_addr

RT = "kvt-e2e-rt"
GUEST = "kvt-e2e-rt1"
SUBNET = "203.0.113.88/29"


@pytest.fixture(scope="module")
def route_line(world) -> str:
    """The iproute2 line of routes/kvt-e2e-rt.txt from `kvmnet render -o DIR`."""
    out = world.workdir / "render"
    proc = kvmnet("render", str(world.spec_path), "-o", str(out))
    assert proc.returncode == 0, describe(proc)
    text = (out / "routes" / f"{RT}.txt").read_text()
    lines = [line for line in text.splitlines() if line.startswith("ip route add ")]
    assert len(lines) == 1, f"want one `ip route add` line in routes/{RT}.txt:\n{text}"
    return lines[0]


@pytest.mark.e2e
def test_guest_gets_lease_in_routed_subnet(world):
    ip, mac = world.leases[GUEST]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET)
    assert ipaddress.ip_address("203.0.113.90") <= ipaddress.ip_address(ip) \
        <= ipaddress.ip_address("203.0.113.94"), f"{ip} is outside the DHCP range"
    leases = {x["mac"]: x["ipaddr"] for x in world.conn.networkLookupByName(RT).DHCPLeases()}
    assert leases.get(mac) == ip, leases


@pytest.mark.e2e
def test_rendered_route_points_at_the_hosts_lan_address(route_line):
    assert route_line == f"ip route add {SUBNET} via {LAN_HOST}"


@pytest.mark.e2e
def test_without_the_route_router_and_guest_cannot_talk(world):
    ip = world.ip(GUEST)
    assert world.ns(NS_LAN, ["ip", "route", "show", SUBNET]).strip() == ""
    got = world.http(NS_LAN, f"http://{ip}/cgi-bin/peer", timeout=3)
    assert got.returncode != 0, f"router reached {ip} without a route: {got.stdout}"
    # the guest's packets do reach the router, but its answers have no way back
    path = f"/rt-noroute-{uuid.uuid4().hex[:8]}"
    rc, out = world.guest_fetch(GUEST, f"http://{LAN_ROUTER}:{PEER_PORT}{path}", timeout=3)
    assert rc != 0, f"guest reached the router without a route back: {out}"
    assert not any(p == path for _, p in world.peers(NS_LAN))


@pytest.mark.e2e
def test_with_the_rendered_route_both_see_real_addresses(world, route_line):
    ip = world.ip(GUEST)
    world.ns(NS_LAN, shlex.split(route_line))
    try:
        got = world.http(NS_LAN, f"http://{ip}/cgi-bin/peer")
        assert got.returncode == 0, f"router -> guest {ip} with the route: {got.stderr}"
        assert peer_addr(got.stdout) == LAN_ROUTER, "the guest saw a translated source"

        path = f"/rt-{uuid.uuid4().hex[:8]}"
        rc, out = world.guest_fetch(GUEST, f"http://{LAN_ROUTER}:{PEER_PORT}{path}")
        assert rc == 0, f"guest -> router with the route: {out}"
        assert out.strip() == f"PEER {ip} {path}", "the router saw a translated source"
    finally:
        world.ns(NS_LAN, ["ip", "route", "del", SUBNET])

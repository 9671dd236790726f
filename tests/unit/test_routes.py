"""The upstream router's static route for routed networks: golden text per
case, and the choice of next hop."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kvmnet.render.routes import (
    PLACEHOLDER,
    UpstreamRoute,
    host_lan_address,
    render_routes,
    upstream_routes,
)
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load, load_text
from lab.golden import assert_golden

DATA = Path(__file__).parent.parent / "data" / "routes"
CASES = sorted(p.name[: -len(".in.yaml")] for p in DATA.glob("*.in.yaml"))


def test_cases_present() -> None:
    assert {"seed", "ipv6"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    spec, pos = load(DATA / f"{case}.in.yaml")
    assert errors(check(spec, pos)) == []
    assert_golden(DATA / f"{case}.out", render_routes(spec))


def test_seed_route() -> None:
    spec, _ = load(DATA / "seed.in.yaml")
    assert upstream_routes(spec) == [UpstreamRoute(
        "mynet1", ipaddress.ip_network("203.0.113.88/29"),
        ipaddress.ip_address("192.168.1.1"), "br0")]
    text = render_routes(spec)["routes/mynet1.txt"]
    for line in ("ip route add 203.0.113.88/29 via 192.168.1.1",
                 "ip route 203.0.113.88 255.255.255.248 192.168.1.1",
                 "/ip route add dst-address=203.0.113.88/29 gateway=192.168.1.1",
                 "set routing-options static route 203.0.113.88/29 next-hop 192.168.1.1",
                 "uci add network route"):
        assert line + "\n" in text
    assert PLACEHOLDER not in text


def test_ipv6_next_hop_is_the_only_global_v6_address() -> None:
    spec, _ = load(DATA / "ipv6.in.yaml")
    vias = {str(r.subnet): str(r.via) for r in upstream_routes(spec)}
    assert vias == {"10.20.0.0/24": "192.168.1.1", "2001:db8:20::/64": "2001:db8:1::2"}
    text = render_routes(spec)["routes/dmz.txt"]
    assert "ip -6 route add 2001:db8:20::/64 via 2001:db8:1::2\n" in text
    assert "ipv6 route 2001:db8:20::/64 2001:db8:1::2\n" in text
    assert "/ipv6 route add dst-address=2001:db8:20::/64 gateway=2001:db8:1::2\n" in text
    assert "set routing-options rib inet6.0 static route 2001:db8:20::/64" in text


def test_unknown_uplink_gives_placeholder() -> None:
    spec, _ = load(DATA / "placeholder.in.yaml")
    (route,) = upstream_routes(spec)
    assert route.via is None and route.on is None
    text = render_routes(spec)["routes/lab.txt"]
    assert f"ip route add 172.16.7.0/24 via {PLACEHOLDER}\n" in text
    assert f"replace {PLACEHOLDER}" in text


def test_gateway_subnet_wins_over_other_bridges() -> None:
    spec, _ = load_text("""
host:
  bridges:
    brstore: {address: 10.9.0.1/24}
    br0: {ports: [eth0], address: 192.168.1.1/24, gateway: 192.168.1.254}
networks:
  r: {mode: route, bridge: virbr9, ipv4: {address: 10.50.0.1/24}}
""")
    assert host_lan_address(spec, 4) == ("br0", ipaddress.ip_address("192.168.1.1"))
    assert host_lan_address(spec, 6) is None


def test_only_routed_networks() -> None:
    spec, _ = load_text("""
networks:
  n: {mode: nat, bridge: virbr0, ipv4: {address: 192.168.122.1/24}}
  i: {mode: isolated, bridge: virbr1, ipv4: {address: 192.168.123.1/24}}
""")
    assert upstream_routes(spec) == [] and render_routes(spec) == {}

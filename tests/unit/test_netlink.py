"""kvmnet.parse.netlink: the host's links, addresses and routes from rtnetlink dump
messages. Most cases give plain dicts (what parse asks of a message is `get(key)`);
the cases marked "wire" give pyroute2 messages encoded to bytes and decoded again, as
the kernel's arrive, so the keys parse asks for are pyroute2's. The fetch against a
real kernel: tests/integration/test_netlink_ns.py."""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from kvmnet.model.live import HostLink, HostRoute
from kvmnet.parse.netlink import (
    dump_interrupted,
    main_routes,
    parse_addresses,
    parse_host,
    parse_link,
    parse_route,
)


def wire(cls: Any, fields: dict[str, Any], attrs: list[tuple[str, Any]]) -> Any:
    """A pyroute2 message as it comes off a socket: encoded, then decoded from bytes."""
    msg = cls()
    for k, v in fields.items():
        msg[k] = v
    msg["attrs"] = attrs
    msg.encode()
    out = cls(msg.data)
    out.decode()
    return out


def link(index: int, name: str, flags: int = 1, **attrs: Any) -> dict[str, Any]:
    return {"index": index, "ifname": name, "flags": flags, **attrs}


def route(family: int, table: int, dst: str | None = None, dst_len: int = 0,
          **attrs: Any) -> dict[str, Any]:
    return {"family": family, "table": table, "dst": dst, "dst_len": dst_len, **attrs}


NAMES = {1: "lo", 3: "kvtnlbr0", 7: "kvtnlv0"}


def test_link_with_kind_master_mac_and_mtu_from_the_wire() -> None:
    msg = wire(ifinfmsg, {"index": 7, "flags": 0x1003},
               [("IFLA_IFNAME", "kvtnlv0"), ("IFLA_ADDRESS", "52:54:00:aa:bb:cc"),
                ("IFLA_MTU", 1400), ("IFLA_MASTER", 3),
                ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]})])
    assert parse_link(msg, NAMES, ("10.249.201.1/24",)) == HostLink(
        name="kvtnlv0", index=7, kind="veth", master="kvtnlbr0", up=True,
        mac="52:54:00:aa:bb:cc", mtu=1400, addresses=("10.249.201.1/24",))


def test_the_permanent_mac_from_the_wire_and_none_for_a_virtual_link() -> None:
    """IFLA_PERM_ADDRESS: the NIC's burnt-in MAC, which the host bridge is pinned to;
    a virtual link has none (absent, or all zeros)."""
    msg = wire(ifinfmsg, {"index": 2, "flags": 1},
               [("IFLA_IFNAME", "eth0"), ("IFLA_ADDRESS", "02:00:00:00:00:01"),
                ("IFLA_PERM_ADDRESS", bytes.fromhex("3CECEF123456"))])
    got = parse_link(msg, NAMES)
    assert got is not None and (got.mac, got.perm_mac) == ("02:00:00:00:00:01",
                                                           "3c:ec:ef:12:34:56")
    zeros = parse_link(link(7, "kvtnlv0", perm_address="00:00:00:00:00:00"), NAMES)
    assert zeros is not None and zeros.perm_mac is None


def test_plain_link_that_is_down_has_no_kind_nor_master() -> None:
    got = parse_link(link(2, "eth0", flags=0x1002, address="02:00:00:00:00:01", mtu=1500),
                     NAMES)
    assert got == HostLink(name="eth0", index=2, kind="", master=None, up=False,
                           mac="02:00:00:00:00:01", mtu=1500)


def test_a_link_without_a_name_is_skipped_and_a_master_we_did_not_see_is_none() -> None:
    assert parse_link({"index": 9, "flags": 1}, NAMES) is None
    assert parse_link(link(8, "kvttap0", master=42), NAMES).master is None  # type: ignore[union-attr]


def test_wireless_comes_from_the_caller() -> None:
    assert parse_link(link(5, "wlp3s0"), NAMES, wireless=True).wireless  # type: ignore[union-attr]


def test_addresses_v4_and_v6_from_the_wire_by_link_in_order() -> None:
    v4 = wire(ifaddrmsg, {"family": 2, "prefixlen": 24, "index": 3},
              [("IFA_ADDRESS", "10.249.200.1")])
    v6 = wire(ifaddrmsg, {"family": 10, "prefixlen": 64, "index": 3},
              [("IFA_ADDRESS", "fd00:249::1")])
    other = {"family": 2, "prefixlen": 8, "index": 1, "address": "127.0.0.1"}
    no_address = {"family": 2, "prefixlen": 32, "index": 1}
    assert parse_addresses([v4, other, v6, no_address]) == {
        3: ("10.249.200.1/24", "fd00:249::1/64"), 1: ("127.0.0.1/8",)}


def test_default_route_with_gateway_and_metric_from_the_wire() -> None:
    msg = wire(rtmsg, {"family": 2, "dst_len": 0, "table": 254},
               [("RTA_TABLE", 254), ("RTA_OIF", 3), ("RTA_GATEWAY", "10.249.200.254"),
                ("RTA_PRIORITY", 50)])
    assert parse_route(msg, NAMES) == HostRoute("0.0.0.0/0", "kvtnlbr0", "10.249.200.254", 50)


def test_v6_default_and_a_route_without_device_nor_metric() -> None:
    assert parse_route(route(10, 254, gateway="fd00:249::2", oif=3), NAMES) == HostRoute(
        "::/0", "kvtnlbr0", "fd00:249::2", None)
    blackhole = route(2, 254, "10.249.203.128", 25)
    assert parse_route(blackhole, NAMES) == HostRoute("10.249.203.128/25", None, None, None)


def test_only_ipv4_and_ipv6_routes_of_the_main_table() -> None:
    # the header's byte says RT_TABLE_COMPAT (252) for ids above 255; RTA_TABLE holds the id
    high = wire(rtmsg, {"family": 2, "dst_len": 24, "table": 252},
                [("RTA_DST", "10.249.202.0"), ("RTA_TABLE", 1000)])
    main_v4 = route(2, 254, "10.249.200.0", 24, oif=3)
    main_v6 = route(10, 254, "fd01::", 64, oif=3)
    local = route(2, 255, "10.249.200.1", 32, oif=3)
    mpls = route(28, 254)
    ipmr = route(128, 254, "239.0.0.0", 8)
    assert main_routes([high, main_v4, local, mpls, main_v6, ipmr]) == [main_v4, main_v6]


@pytest.mark.parametrize(("flags", "interrupted"), [(2, False), (2 | 0x10, True)])
def test_a_dump_marked_inconsistent_is_interrupted(flags: int, interrupted: bool) -> None:
    msg = wire(ifinfmsg, {"index": 1, "header": {"type": 16, "flags": flags}},
               [("IFLA_IFNAME", "lo")])
    ok = {"header": {"flags": 2}}
    assert dump_interrupted([ok, msg]) is interrupted
    assert dump_interrupted([]) is False
    assert dump_interrupted([{"index": 1}]) is False  # no header: nothing says so


def test_parse_host_puts_the_three_dumps_together() -> None:
    links = [link(1, "lo", flags=0x49, address="00:00:00:00:00:00", mtu=65536),
             link(3, "kvtnlbr0", linkinfo={"kind": "bridge"}),
             link(7, "kvtnlv0", master=3, linkinfo={"kind": "veth"}, mtu=1400),
             {"index": 9, "flags": 1}]
    addrs = [{"index": 3, "address": "10.249.200.1", "prefixlen": 24},
             {"index": 1, "address": "127.0.0.1", "prefixlen": 8}]
    routes = [route(2, 254, gateway="10.249.200.254", oif=3, priority=50),
              route(2, 255, "127.0.0.1", 32, oif=1), route(10, 254, "fd01::", 64, oif=7)]
    host = parse_host(links, addrs, routes, wireless={"kvtnlv0", "gone0"})
    assert host.readable and sorted(host.links) == ["kvtnlbr0", "kvtnlv0", "lo"]
    br, port = host.links["kvtnlbr0"], host.links["kvtnlv0"]
    assert (br.kind, br.addresses, br.wireless) == ("bridge", ("10.249.200.1/24",), False)
    assert (port.kind, port.master, port.mtu, port.wireless) == ("veth", "kvtnlbr0", 1400, True)
    assert host.links["lo"].addresses == ("127.0.0.1/8",)
    assert host.routes == (HostRoute("0.0.0.0/0", "kvtnlbr0", "10.249.200.254", 50),
                           HostRoute("fd01::/64", "kvtnlv0"))

"""kvmnet.backend.netlink_read's pure half: rtnetlink replies parsed from bytes built here the way
the kernel lays them out (headers, 4-byte aligned attributes, nested IFLA_LINKINFO), the
end of a dump, an error reply, and a dump the kernel marks inconsistent (asked again).
The same reader against a real kernel, compared with pyroute2: tests/integration/
test_netlink_ns.py."""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

import pytest

from kvmnet.backend import netlink_read as nl


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def msg(kind: int, body: bytes, seq: int, flags: int = 2) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 4242) + body


def link_body(index: int, name: str, flags: int = 1, **extra: bytes) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    body += attr(nl.IFLA_IFNAME, name.encode() + b"\0")
    for kind, payload in extra.items():
        body += attr({"address": nl.IFLA_ADDRESS, "mtu": nl.IFLA_MTU, "master": nl.IFLA_MASTER,
                      "linkinfo": nl.IFLA_LINKINFO}[kind], payload)
    return body


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def test_link_with_kind_master_mac_and_mtu() -> None:
    info = attr(nl.IFLA_INFO_KIND | 0x8000, b"veth\0")  # nested flag bit: dropped
    body = link_body(7, "kvt-v0", flags=0x1003, address=bytes.fromhex("525400aabbcc"),
                     mtu=u32(1400), master=u32(3), linkinfo=info)
    assert nl.parse_link(body) == nl.Link(index=7, name="kvt-v0", kind="veth", master=3,
                                          flags=0x1003, mac="52:54:00:aa:bb:cc", mtu=1400)


def test_plain_link_has_no_kind_nor_master() -> None:
    link = nl.parse_link(link_body(1, "lo", flags=0x49, address=bytes(6), mtu=u32(65536)))
    assert (link.kind, link.master, link.mac, link.mtu) == (None, None, "00:00:00:00:00:00",
                                                             65536)


def test_first_attribute_of_a_type_wins() -> None:
    body = link_body(2, "first") + attr(nl.IFLA_IFNAME, b"second\0")
    assert nl.parse_link(body).name == "first"


def test_addresses_v4_and_v6() -> None:
    v4 = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 5) + attr(
        nl.IFA_ADDRESS, socket.inet_pton(socket.AF_INET, "10.249.200.1"))
    v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 5) + attr(
        nl.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "fd00:249::1"))
    assert nl.parse_addr(v4) == nl.Addr(5, "10.249.200.1", 24)
    assert nl.parse_addr(v6) == nl.Addr(5, "fd00:249::1", 64)


def rt(family: int, dst_len: int, header_table: int, **a: bytes) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, header_table, 4, 0, 1, 0)
    kinds = {"dst": nl.RTA_DST, "oif": nl.RTA_OIF, "gateway": nl.RTA_GATEWAY,
             "priority": nl.RTA_PRIORITY, "table": nl.RTA_TABLE}
    return body + b"".join(attr(kinds[k], v) for k, v in a.items())


def test_default_route_and_a_route_with_metric() -> None:
    gw = socket.inet_pton(socket.AF_INET, "10.249.200.254")
    default = nl.parse_route(rt(2, 0, 254, table=u32(254), oif=u32(3), gateway=gw,
                                priority=u32(50)))
    assert default == nl.Route(2, 254, None, 0, 3, "10.249.200.254", 50)
    net = nl.parse_route(rt(10, 64, 254, dst=socket.inet_pton(socket.AF_INET6, "fd01::")))
    assert (net.dst, net.dst_len, net.oif, net.gateway, net.priority) == ("fd01::", 64, None,
                                                                          None, None)


def test_table_above_255_comes_from_rta_table() -> None:
    # the header's byte says RT_TABLE_COMPAT (252); the attribute holds the real id
    assert nl.parse_route(rt(2, 24, 252, table=u32(1000))).table == 1000
    assert nl.parse_route(rt(2, 24, 254)).table == 254


def test_split_keeps_only_our_request_and_sees_the_end() -> None:
    data = (msg(16, b"a" * 4, seq=7) + msg(16, b"b" * 4, seq=8) + msg(nl.NLMSG_DONE, u32(0), 7))
    assert nl.split(data, 7) == ([b"a" * 4], True, False)
    assert nl.split(msg(16, b"c" * 4, seq=7), 7) == ([b"c" * 4], False, False)


def test_split_flags_an_interrupted_dump() -> None:
    data = msg(16, b"a" * 4, seq=1, flags=2 | nl.NLM_F_DUMP_INTR) + msg(nl.NLMSG_DONE, u32(0), 1)
    assert nl.split(data, 1) == ([b"a" * 4], True, True)


def test_split_raises_the_kernels_error() -> None:
    with pytest.raises(OSError) as e:
        nl.split(msg(nl.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16), 3), 3)
    assert e.value.errno == errno.EPERM


class FakeSocket:
    """Replies to each request in turn with the datagrams given for it."""

    def __init__(self, replies: list[list[bytes]]) -> None:
        self.replies = replies
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def sendto(self, data: bytes, _addr: Any) -> None:
        self.sent.append(data)
        self.queue = list(self.replies.pop(0))

    def recv_into(self, buf: bytearray, n: int, flags: int = 0) -> int:
        data = self.queue[0]
        if not flags & socket.MSG_PEEK:
            self.queue.pop(0)
            buf[:len(data)] = data
        return len(data)


def test_dump_reads_every_datagram_and_asks_again_when_interrupted() -> None:
    first = [msg(16, link_body(1, "lo"), 1, flags=2 | nl.NLM_F_DUMP_INTR),
             msg(nl.NLMSG_DONE, u32(0), 1)]
    again = [msg(16, link_body(1, "lo"), 1), msg(16, link_body(2, "eth0"), 1) + msg(
        nl.NLMSG_DONE, u32(0), 1)]
    sock = FakeSocket([first, again])
    got = nl.links(sock)  # type: ignore[arg-type]
    assert [x.name for x in got] == ["lo", "eth0"]
    assert len(sock.sent) == 2


def test_dump_grows_its_buffer_for_a_big_datagram() -> None:
    big = msg(16, link_body(9, "x" * 15) + attr(99, bytes(40000)) * 2, 1)  # > 64 KiB
    sock = FakeSocket([[big, msg(nl.NLMSG_DONE, u32(0), 1)]])
    assert [x.index for x in nl.links(sock)] == [9]  # type: ignore[arg-type]


def test_dump_gives_up_when_the_table_keeps_changing() -> None:
    intr = [msg(16, link_body(1, "lo"), 1, flags=2 | nl.NLM_F_DUMP_INTR),
            msg(nl.NLMSG_DONE, u32(0), 1)]
    sock = FakeSocket([intr] * nl.DUMP_TRIES)
    with pytest.raises(OSError) as e:
        nl.links(sock)  # type: ignore[arg-type]
    assert e.value.errno == errno.EAGAIN

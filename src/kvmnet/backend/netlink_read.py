"""Read the host's links, addresses and routes over rtnetlink with the standard library.

plan reads the host whenever a network is new (its bridge and subnet must not collide
with the host's): every first apply. pyroute2 made that read cost 0.2-0.3 s here (its
import, its asyncio core, and a forked helper process to open a socket inside
--netns); this module sends four dump requests on one NETLINK_ROUTE socket, opened
inside the namespace (kvmnet.backend.netns), in a few milliseconds. Fetch raw
(`dump`), parse pure (`parse_link`, `parse_addr`, `parse_route`, tested on bytes);
the values are pyroute2's (tests compare both on the real kernel). Writes stay with
pyroute2 (live/host.py, live/hosttx.py).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x10, 0x300
DUMP_TRIES = 10
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE = 18, 22, 26
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")    # family, dst_len, src_len, tos, table, proto,
                                        # scope, type, flags
_RTATTR = struct.Struct("=HH")          # len, type
_U32 = struct.Struct("=I")


@dataclass(frozen=True)
class Link:
    index: int
    name: str | None
    kind: str | None          # IFLA_INFO_KIND: bridge, veth, ...; None for plain devices
    master: int | None        # index of the bridge (or bond) it is a port of
    flags: int
    mac: str | None
    mtu: int | None


@dataclass(frozen=True)
class Addr:
    index: int
    address: str | None
    prefixlen: int


@dataclass(frozen=True)
class Route:
    family: int
    table: int
    dst: str | None
    dst_len: int
    oif: int | None
    gateway: str | None
    priority: int | None


# -- parse (pure) --------------------------------------------------------------

def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The rtattrs from offset on, by type (the first of each type, as pyroute2's
    get_attr); the nested and byte-order flag bits are dropped from the type."""
    out: dict[int, bytes] = {}
    end = len(data)
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        out.setdefault(kind & 0x3FFF, data[offset + _RTATTR.size:offset + length])
        offset += (length + 3) & ~3
    return out


def _str(v: bytes | None) -> str | None:
    return None if v is None else v.split(b"\0", 1)[0].decode(errors="replace")


def _u32(v: bytes | None) -> int | None:
    return None if v is None or len(v) < 4 else int(_U32.unpack_from(v)[0])


def _ip(family: int, v: bytes | None) -> str | None:
    return None if v is None else socket.inet_ntop(family, v)


def _l2(v: bytes | None) -> str | None:
    return None if v is None else ":".join(f"{b:02x}" for b in v)


def parse_link(msg: bytes) -> Link:
    """One RTM_NEWLINK payload (after the netlink header)."""
    _fam, _type, index, flags, _change = _IFINFOMSG.unpack_from(msg)
    a = attrs(msg, _IFINFOMSG.size)
    info = a.get(IFLA_LINKINFO)
    kind = _str(attrs(info).get(IFLA_INFO_KIND)) if info is not None else None
    return Link(index=index, name=_str(a.get(IFLA_IFNAME)), kind=kind,
                master=_u32(a.get(IFLA_MASTER)), flags=flags, mac=_l2(a.get(IFLA_ADDRESS)),
                mtu=_u32(a.get(IFLA_MTU)))


def parse_addr(msg: bytes) -> Addr:
    """One RTM_NEWADDR payload."""
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(msg)
    a = attrs(msg, _IFADDRMSG.size)
    return Addr(index=index, address=_ip(family, a.get(IFA_ADDRESS)), prefixlen=prefixlen)


def parse_route(msg: bytes) -> Route:
    """One RTM_NEWROUTE payload; the table is RTA_TABLE (ids above 255) or the header's."""
    family, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(msg)
    a = attrs(msg, _RTMSG.size)
    full_table = _u32(a.get(RTA_TABLE))
    return Route(family=family, table=table if full_table is None else full_table,
                 dst=_ip(family, a.get(RTA_DST)), dst_len=dst_len, oif=_u32(a.get(RTA_OIF)),
                 gateway=_ip(family, a.get(RTA_GATEWAY)), priority=_u32(a.get(RTA_PRIORITY)))


def split(data: bytes, seq: int) -> tuple[list[bytes], bool, bool]:
    """The payloads of one datagram's messages of request `seq`; whether the dump ended
    (NLMSG_DONE); whether the kernel marked it inconsistent (the table changed while it
    was dumped: NLM_F_DUMP_INTR). An NLMSG_ERROR raises its errno as OSError."""
    out: list[bytes] = []
    intr = False
    offset, end = 0, len(data)
    while offset + _NLMSGHDR.size <= end:
        length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        body = data[offset + _NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3
        if mseq != seq:
            continue
        intr = intr or bool(flags & NLM_F_DUMP_INTR)
        if kind == NLMSG_DONE:
            return out, True, intr
        if kind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", body)[0]
            if err:
                raise OSError(err, os.strerror(err))
            return out, True, intr
        out.append(body)
    return out, False, intr


# -- fetch ---------------------------------------------------------------------

def _socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)


@contextmanager
def route_socket(netns: str | None = None) -> Iterator[socket.socket]:
    """A NETLINK_ROUTE socket of our namespace or of `netns` (never created: a name that
    does not exist is an error). The socket stays in the namespace it was made in, so
    this thread goes there only for the socket() call."""
    if netns is None:
        sock = _socket()
    else:
        from kvmnet.backend.netns import entered

        with entered(netns):
            sock = _socket()
    try:
        sock.bind((0, 0))
        yield sock
    finally:
        sock.close()


def dump(sock: socket.socket, msg_type: int, header: bytes, seq: int) -> list[bytes]:
    """Send one dump request; the payloads of every reply message, in order. A dump the
    kernel marks inconsistent (a link came or went meanwhile) is asked again."""
    req = _NLMSGHDR.pack(_NLMSGHDR.size + len(header), msg_type,
                         NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + header
    buf = bytearray(1 << 16)
    for _ in range(DUMP_TRIES):
        sock.sendto(req, (0, 0))
        out: list[bytes] = []
        done = intr = False
        while not done:
            n = sock.recv_into(buf, len(buf), socket.MSG_PEEK | socket.MSG_TRUNC)
            if n > len(buf):  # a datagram larger than the buffer: grow, then take it
                buf = bytearray(n)
            n = sock.recv_into(buf, len(buf))
            msgs, done, more_intr = split(bytes(buf[:n]), seq)
            out += msgs
            intr = intr or more_intr
        if not intr:
            return out
    raise OSError(errno.EAGAIN, f"the table kept changing while it was read ({DUMP_TRIES} "
                                "tries)")


def links(sock: socket.socket) -> list[Link]:
    return [parse_link(m) for m in dump(sock, RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0), 1)]


def addrs(sock: socket.socket) -> list[Addr]:
    return [parse_addr(m) for m in dump(sock, RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0), 2)]


def routes(sock: socket.socket, family: int, table: int) -> list[Route]:
    """The routes of one family in one table (filtered here: the kernel filters a dump
    by table only with strict checking on)."""
    hdr = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    return [r for r in map(parse_route, dump(sock, RTM_GETROUTE, hdr, 3 + family))
            if r.table == table]

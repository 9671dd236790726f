"""The self-check after a host network change: does an address answer a ping?

ICMP echo over a raw socket made inside the right network namespace (this thread
enters it for the socket() call: kvmnet.backend.netns; no `ping` binary, no shell).
Needs root, as every host change does.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time


def ping(address: str, netns: str | None = None, within: float = 5.0,
         interval: float = 0.2, dev: str | None = None) -> float | None:
    """Seconds until `address` first answered an echo request, or None if it did not
    within `within` seconds (one request every `interval` seconds until then). An IPv6
    link-local address is pinged on link `dev` (its scope); None when there is none."""
    ip = ipaddress.ip_address(address)
    v4 = ip.version == 4
    family = socket.AF_INET if v4 else socket.AF_INET6
    proto = socket.IPPROTO_ICMP if v4 else socket.IPPROTO_ICMPV6
    scoped = not v4 and ip.is_link_local
    if scoped and dev is None:
        return None
    sock, scope = _socket(family, proto, netns, dev if scoped else None)
    to: tuple[str, int] | tuple[str, int, int, int] = (str(ip), 0, 0, scope) if scoped \
        else (str(ip), 0)
    ident = (os.getpid() ^ int(time.monotonic() * 1000)) & 0xFFFF
    start = time.monotonic()
    try:
        seq = 0
        while time.monotonic() - start < within:
            seq += 1
            sock.sendto(_echo(ident, seq, v4), to)
            wait_until = min(time.monotonic() + interval, start + within)
            while (left := wait_until - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data, src = sock.recvfrom(2048)
                if ipaddress.ip_address(src[0].split("%")[0]) == ip and _is_reply(
                        data, ident, v4):
                    return time.monotonic() - start
    finally:
        sock.close()
    return None


def _socket(family: int, proto: int, netns: str | None, dev: str | None
            ) -> tuple[socket.socket, int]:
    """The raw socket, and the index of link `dev` (0: none), both in the namespace."""
    def make() -> tuple[socket.socket, int]:
        return (socket.socket(family, socket.SOCK_RAW, proto),
                socket.if_nametoindex(dev) if dev else 0)

    if netns is None:
        return make()
    from kvmnet.backend.netns import entered

    with entered(netns):
        return make()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident: int, seq: int, v4: bool) -> bytes:
    kind = 8 if v4 else 128
    payload = b"kvmnet self-check"
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if not v4:  # the kernel fills in the ICMPv6 checksum
        return header + payload
    csum = _checksum(header + payload)
    return struct.pack("!BBHHH", kind, 0, csum, ident, seq) + payload


def _is_reply(data: bytes, ident: int, v4: bool) -> bool:
    if v4:  # a raw IPv4 socket hands over the IP header too
        data = data[(data[0] & 0x0F) * 4:] if data else data
    if len(data) < 8:
        return False
    kind, _code, _csum, rid, _seq = struct.unpack("!BBHHH", data[:8])
    return bool(kind == (0 if v4 else 129) and rid == ident)

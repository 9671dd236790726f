"""The host's socket table, from the kernel (NETLINK_SOCK_DIAG: pyroute2's DiagSocket),
never from `ss` text and never from the environment.

Two things plan needs it for:

- what the host serves (listening TCP, bound UDP sockets): a port forward must not take
  over a port the host itself listens on (kvmnet.plan.forward_ports);
- the SSH sessions that are open now (established TCP connections whose local port is
  a listening sshd port, or 22): a host bridge must not move their address without a
  `gateway:` (kvmnet.plan.host). `$SSH_CONNECTION` told that before, but `sudo` drops
  it, and any process can set it.

Which listening ports are sshd's: 22, and every port a process named sshd (its
/proc/PID/comm) holds a listening socket on (found by the socket's inode in
/proc/PID/fd). With `netns`, the socket is made inside that namespace (a netlink
socket answers for the namespace it was made in: kvmnet.backend.netns).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from typing import Any

from kvmnet.errors import LiveError
from kvmnet.model.live import Listener

SSH_PORT = 22
_LISTEN, _ESTABLISHED, _CLOSE = 10, 1, 7   # the kernel's TCP states (include/net/tcp_states.h)


def _plain(addr: str) -> str:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is."""
    a = ipaddress.ip_address(addr)
    mapped = getattr(a, "ipv4_mapped", None)
    return str(mapped or a)


def _dump(netns: str | None) -> list[tuple[str, Any]]:
    """(proto, message) for every TCP and UDP socket of both families."""
    from pyroute2.netlink.diag import DiagSocket

    def dump() -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = []
        with DiagSocket() as ds:
            ds.bind()
            for family in (socket.AF_INET, socket.AF_INET6):
                tcp = (1 << _LISTEN) | (1 << _ESTABLISHED)
                rows += [("tcp", m) for m in ds.get_sock_stats(family=family, states=tcp)]
                rows += [("udp", m) for m in ds.get_sock_stats(
                    family=family, states=1 << _CLOSE, protocol=socket.IPPROTO_UDP)]
        return rows

    if netns is None:
        return dump()
    from kvmnet.backend.netns import entered

    with entered(netns):
        return dump()


def _v6only(m: Any) -> bool:
    return bool(m.get_attr("INET_DIAG_SKV6ONLY")) if m["idiag_family"] == socket.AF_INET6 \
        else True


def sshd_inodes(proc: str = "/proc") -> set[int]:
    """The inodes of the sockets processes named sshd hold."""
    out: set[int] = set()
    for pid in (p for p in _listdir(proc) if p.isdigit()):
        try:
            with open(f"{proc}/{pid}/comm") as f:
                if not f.read().startswith("sshd"):
                    continue
        except OSError:
            continue
        for fd in _listdir(f"{proc}/{pid}/fd"):
            try:
                link = os.readlink(f"{proc}/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link.endswith("]"):
                out.add(int(link[8:-1]))
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def read_sockets(netns: str | None = None,
                 names: dict[int, str] | None = None) -> tuple[tuple[Listener, ...],
                                                               tuple[str, ...]]:
    """(what listens, the local addresses of the established SSH sessions). `names`:
    interface index -> name (a socket bound to a device serves only that device)."""
    try:
        rows = _dump(netns)
    except (OSError, ValueError) as e:
        where = f"network namespace {netns}" if netns else "the host"
        raise LiveError(f"cannot read the socket table of {where}: {e}") from None
    return sockets_from(rows, sshd_inodes(), names or {})


def sockets_from(rows: Iterable[tuple[str, Any]], sshd: set[int], names: dict[int, str]
                 ) -> tuple[tuple[Listener, ...], tuple[str, ...]]:
    listening: set[Listener] = set()
    ssh_ports = {SSH_PORT}
    established = []
    for proto, m in rows:
        state, port = m["idiag_state"], m["idiag_sport"]
        if state == _ESTABLISHED and proto == "tcp":
            established.append(m)
            continue
        if proto == "udp" and (m["idiag_dport"] or not port):
            continue  # a connected UDP socket serves no one else
        dev = names.get(m["idiag_if"], str(m["idiag_if"])) if m["idiag_if"] else None
        listening.add(Listener(proto, _plain(m["idiag_src"]), port, dev, not _v6only(m)))
        if proto == "tcp" and m["idiag_inode"] in sshd:
            ssh_ports.add(port)
    sessions = sorted({_plain(m["idiag_src"]) for m in established
                       if m["idiag_sport"] in ssh_ports})
    return tuple(sorted(listening)), tuple(sessions)

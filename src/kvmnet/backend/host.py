"""Host links, addresses and routes over netlink with pyroute2, never `ip` output:
fetched here, parsed by kvmnet.parse.netlink (pure).

`netns` names a network namespace to look into instead of our own (the tests run
libvirtd in one; a lab user can too). Its netlink socket is made inside it by this
thread (kvmnet.backend.netns) and handed to pyroute2 as a file descriptor: pyroute2's
own netns= forks a helper process for that (~20 ms) and creates a namespace that does
not exist unless told not to.

pyroute2 is imported here only, when a command first talks to netlink: its package
loads every netlink family it knows (~0.1 s), which `kvmnet plan -c test:///...`,
validate and --help never pay.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvmnet.errors import LiveError
from kvmnet.model.live import HostState

if TYPE_CHECKING:
    from pyroute2 import IPRoute

DUMP_TRIES = 10


def _where(netns: str | None) -> str:
    return f"network namespace {netns}" if netns else "the host"


def _route_socket(netns: str) -> socket.socket:
    """A NETLINK_ROUTE socket of `netns` (an error when it does not exist; never made)."""
    from kvmnet.backend.netns import entered

    with entered(netns):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)


@contextmanager
def iproute(netns: str | None = None) -> Iterator[IPRoute]:
    """pyroute2's IPRoute on our namespace or on `netns`; no event groups (kvmnet asks
    and waits for the answer, it never listens)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr = (IPRoute(fileno=_route_socket(netns).detach(), groups=0) if netns
               else IPRoute(groups=0))
    except (OSError, ValueError, NetlinkError) as e:  # ValueError: a NUL in the name
        raise LiveError(f"cannot read links of {_where(netns)}: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    try:
        yield ipr
    finally:
        ipr.close()


def fetch_host(netns: str | None = None) -> tuple[tuple[Any, ...], ...]:
    """The link, address and route dumps, as pyroute2's messages. A dump the kernel
    marks inconsistent (a link came or went meanwhile) is asked again."""
    from pyroute2.netlink.exceptions import NetlinkError

    from kvmnet.parse.netlink import dump_interrupted

    try:
        with iproute(netns) as ipr:
            for _ in range(DUMP_TRIES):
                dumps = (tuple(ipr.link("dump")), tuple(ipr.addr("dump")),
                         tuple(ipr.route("dump")))
                if not any(dump_interrupted(d) for d in dumps):
                    return dumps
    except (OSError, NetlinkError) as e:
        raise LiveError(f"cannot read links of {_where(netns)}: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    raise LiveError(f"cannot read links of {_where(netns)}: they kept changing while they "
                    f"were read ({DUMP_TRIES} tries)")


def read_host(netns: str | None = None) -> HostState:
    """Links, addresses and main-table routes (kvmnet.parse.netlink.parse_host), each
    link marked Wi-Fi or not (wireless_links)."""
    from kvmnet.parse.netlink import parse_host

    links, addrs, routes = fetch_host(netns)
    names = [str(m.get("ifname")) for m in links if m.get("ifname") is not None]
    return parse_host(links, addrs, routes, wireless=wireless_links(names, netns),
                      default_accept_ra=default_accept_ra(netns))


def default_accept_ra(netns: str | None = None) -> int | None:
    """net.ipv6.conf.default.accept_ra of the host (or namespace): what a link made now,
    such as a new host bridge, starts with. None when it cannot be read (no IPv6)."""
    path = "/proc/sys/net/ipv6/conf/default/accept_ra"

    def read() -> int | None:
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    if netns is None:
        return read()
    from kvmnet.backend.netns import entered

    try:
        with entered(netns):
            return read()
    except OSError:
        return None


def wireless_links(names: Iterable[str], netns: str | None = None,
                   sysfs: Path | None = None) -> frozenset[str]:
    """Which of `names` are Wi-Fi links (kvmnet.parse.sysfs), per sysfs: /sys, or `sysfs`
    when given (tests, doctor --sysfs-root). /sys shows the links of the namespace that
    mounted it, so for `netns` the paths are looked at by `ip netns exec`, which mounts
    the namespace's own: one `ls -d` of them all, which prints those that exist. A name
    not found is not Wi-Fi."""
    from kvmnet.parse.sysfs import wifi_paths, wireless_names

    names = list(names)
    if not names:
        return frozenset()
    if sysfs is not None or netns is None:
        paths = wifi_paths(str((sysfs or Path("/sys")) / "class" / "net"), names)
        return wireless_names(p for p in paths if os.path.lexists(p))
    paths = wifi_paths("/sys/class/net", names)
    try:
        r = subprocess.run(["ip", "netns", "exec", netns, "ls", "-d", "--", *paths],
                           capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LiveError(f"cannot look for Wi-Fi links in {_where(netns)}: {e}") from None
    return wireless_names(r.stdout.splitlines())  # ls exits 2: most paths do not exist


def set_master(ifname: str, bridge: str, netns: str | None = None,
               mtu: int | None = None) -> None:
    """Put a tap back into its bridge (after libvirt recreated the bridge), with the
    network's MTU when it has one (libvirt sets a tap's MTU only when it plugs it)."""
    with iproute(netns) as ipr:
        br = ipr.link_lookup(ifname=bridge)
        if not br or not ipr.link_lookup(ifname=ifname):
            raise LiveError(f"cannot reconnect {ifname} to {bridge}: "
                            f"{'bridge' if not br else 'tap'} not found")
        plug(ipr, ifname, br[0], mtu)


def plug(ipr: IPRoute, ifname: str, bridge_index: int, mtu: int | None) -> None:
    """Tap `ifname` into the bridge of that index, up, with `mtu` when given."""
    tap = ipr.link_lookup(ifname=ifname)
    if not tap:
        raise LiveError(f"cannot reconnect {ifname}: tap not found")
    if mtu:
        ipr.link("set", index=tap[0], mtu=mtu)
    ipr.link("set", index=tap[0], master=bridge_index)
    ipr.link("set", index=tap[0], state="up")

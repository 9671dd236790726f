"""Host links, addresses and routes over netlink, never `ip` output: read with
kvmnet.backend.netlink_read (the standard library), changed with pyroute2.

`netns` names a network namespace to look into instead of our own (the
tests run libvirtd in one; a lab user can too).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kvmnet.errors import LiveError
from kvmnet.model.live import HostLink, HostRoute, HostState


def _lazy_package(name: str) -> None:
    """Register package `name` without running its __init__ until a name is taken from
    it (PEP 562 __getattr__): pyroute2's __init__ imports every netlink family it
    knows (ipdb, ndb, conntrack, wireguard, ...), about 0.1 s, the largest import of a
    no-op apply, while reading links needs only pyroute2.iproute. `from pyroute2
    import X` anywhere else still works: it runs the whole __init__ then."""
    spec = importlib.util.find_spec(name)
    if name in sys.modules or spec is None or spec.loader is None:
        return
    pkg = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(attr: str) -> Any:  # noqa: N807 - the module hook
        if importlib.util.find_spec(f"{name}.{attr}") is not None:  # a submodule
            return importlib.import_module(f"{name}.{attr}")
        del pkg.__dict__["__getattr__"]
        loader.exec_module(pkg)
        return getattr(pkg, attr)

    pkg.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = pkg


@contextmanager
def iproute(netns: str | None = None) -> Iterator[Any]:
    _lazy_package("pyroute2")
    from pyroute2.iproute import IPRoute, NetNS

    try:
        ipr = NetNS(netns) if netns else IPRoute()
    except OSError as e:
        where = f"network namespace {netns}" if netns else "the host"
        raise LiveError(f"cannot read links of {where}: {e.strerror or e}") from None
    try:
        yield ipr
    finally:
        ipr.close()


def read_host(netns: str | None = None) -> HostState:
    """Links, addresses and main-table routes, read with four netlink dumps
    (kvmnet.backend.netlink_read: no pyroute2 import, no helper process for --netns)."""
    from kvmnet.backend import netlink_read as netlink

    try:
        with netlink.route_socket(netns) as sock:
            links_raw = netlink.links(sock)
            addrs_raw = netlink.addrs(sock)
            routes_raw = [r for family in (2, 10) for r in netlink.routes(sock, family, 254)]
    except OSError as e:
        where = f"network namespace {netns}" if netns else "the host"
        raise LiveError(f"cannot read links of {where}: {e.strerror or e}") from None
    names: dict[int | None, str | None] = {m.index: m.name for m in links_raw}
    addrs: dict[int, list[str]] = {}
    for a in addrs_raw:
        addrs.setdefault(a.index, []).append(f"{a.address}/{a.prefixlen}")
    links: dict[str, HostLink] = {}
    for m in links_raw:
        name = names[m.index]
        if name is None:  # pragma: no cover - the kernel names every link
            continue
        links[name] = HostLink(
            name=name, index=m.index, kind=m.kind or "", master=names.get(m.master),
            up=bool(m.flags & 1), mac=m.mac, mtu=m.mtu, wireless=_is_wireless(name, netns),
            addresses=tuple(addrs.get(m.index, ())))
    routes = tuple(HostRoute(
        dst=f"{r.dst}/{r.dst_len}" if r.dst else ("0.0.0.0/0" if r.family == 2 else "::/0"),
        dev=names.get(r.oif), gateway=r.gateway, metric=r.priority) for r in routes_raw)
    return HostState(links=links, routes=routes, readable=True)


def _is_wireless(name: str, netns: str | None) -> bool:
    if netns:
        return False  # sysfs shows our own namespace only
    return os.path.isdir(f"/sys/class/net/{name}/wireless") or os.path.isdir(
        f"/sys/class/net/{name}/phy80211")


def set_master(ifname: str, bridge: str, netns: str | None = None,
               mtu: int | None = None) -> None:
    """Put a tap back into its bridge (after libvirt recreated the bridge), with the
    network's MTU when it has one (libvirt sets a tap's MTU only when it plugs it)."""
    with iproute(netns) as ipr:
        br = ipr.link_lookup(ifname=bridge)
        tap = ipr.link_lookup(ifname=ifname)
        if not br or not tap:
            raise LiveError(f"cannot reconnect {ifname} to {bridge}: "
                            f"{'bridge' if not br else 'tap'} not found")
        if mtu:
            ipr.link("set", index=tap[0], mtu=mtu)
        ipr.link("set", index=tap[0], master=br[0])
        ipr.link("set", index=tap[0], state="up")

"""Move a host NIC into a bridge over netlink (pyroute2), and put it back exactly.

`snapshot` records, before anything changes, each link a step touches (the
bridge if it exists, every port): MAC, MTU, up, master, STP and forward delay,
the addresses kvmnet moves (all but IPv6 link-local ones, which the kernel
makes per link) and the routes through the link that someone configured (not
the kernel's own: proto kernel or ra, table local), as kvmnet.apply.bridge.links
records.

`migrate` keeps established sessions alive: the bridge gets the port's MAC (the
LAN's ARP caches and a DHCP lease stay valid), the port is enslaved first
(Linux still accepts packets for the port's address arriving on the bridge),
then kvmnet waits until the kernel reports the bridge up (before that it
drops what it should send), adds the addresses to the bridge, *replaces* each
route (one atomic netlink call moves it, the default route included, with its
metric), hands the port's neighbour entries to the bridge, and only then do
the addresses leave the port.

The way back is hostundo.restore.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from kvmnet.apply.bridge.links import FOREVER, Addr, Link, Route
from kvmnet.apply.bridge.nl import TABLE_LOCAL as TABLE_LOCAL
from kvmnet.apply.bridge.nl import link_index as link_index
from kvmnet.apply.bridge.nl import nl as nl
from kvmnet.apply.bridge.nl import route_args as route_args
from kvmnet.apply.bridge.nl import table_of as _table
from kvmnet.plan.host import wireless_port
from kvmnet.plan.host_lower import nics_below

if TYPE_CHECKING:
    from kvmnet.model.spec import Host, HostBridge

T = TypeVar("T")

IFF_UP = 0x1
PROTO_KERNEL, PROTO_RA = 2, 9
IFA_F_NODAD = 0x02
# address flags a user sets (nodad, homeaddress, mngtmpaddr, noprefixroute, autojoin);
# the others (tentative, dadfailed, deprecated, permanent, ...) are the kernel's
SETTABLE_FLAGS = 0x02 | 0x10 | 0x100 | 0x200 | 0x400
NUD_STALE = 0x04
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10  # reachable, stale, delay, probe


# -- reading ------------------------------------------------------------------

def snapshot(ipr: Any, names: Iterable[str]) -> list[Link]:
    links = {m["index"]: m for m in ipr.get_links()}
    by_name = {m.get_attr("IFLA_IFNAME"): i for i, m in links.items()}
    routes = [r for fam in (2, 10) for r in ipr.get_routes(family=fam)]
    out = []
    for name in names:
        idx = by_name.get(name)
        if idx is None:
            out.append(Link(name, False))
            continue
        out.append(_link(ipr, links[idx], links, routes))
    return out


def _link(ipr: Any, m: Any, links: Mapping[int, Any], routes: Sequence[Any]) -> Link:
    idx = m["index"]
    info = m.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
    stp = fd = None
    if kind == "bridge" and info is not None:
        data = info.get_attr("IFLA_INFO_DATA")
        if data is not None:
            stp, fd = data.get_attr("IFLA_BR_STP_STATE"), data.get_attr("IFLA_BR_FORWARD_DELAY")
    master = m.get_attr("IFLA_MASTER")
    return Link(
        name=m.get_attr("IFLA_IFNAME"), exists=True, kind=kind, mac=m.get_attr("IFLA_ADDRESS"),
        mtu=m.get_attr("IFLA_MTU"), up=bool(m["flags"] & IFF_UP),
        master=links[master].get_attr("IFLA_IFNAME") if master in links else None,
        addresses=tuple(_addr(a) for a in ipr.get_addr(index=idx) if _movable(a)),
        routes=tuple(_route(r) for r in routes if _ours(r, idx)),
        stp=stp, forward_delay=fd,
        multipath=tuple(str(_route(r)) for r in routes if _via_multipath(r, idx)))


def _movable(a: Any) -> bool:
    """Every address but IPv6 link-local (fe80::/10), which each link makes itself."""
    return not (a["family"] == 10 and a["scope"] == 253)


def _addr(a: Any) -> Addr:
    ci = a.get_attr("IFA_CACHEINFO") or {}
    flags = a.get_attr("IFA_FLAGS")
    return Addr(family=a["family"], address=a.get_attr("IFA_ADDRESS"), prefixlen=a["prefixlen"],
                local=a.get_attr("IFA_LOCAL"), broadcast=a.get_attr("IFA_BROADCAST"),
                label=a.get_attr("IFA_LABEL"), scope=a["scope"],
                flags=a["flags"] if flags is None else flags,
                valid=ci.get("ifa_valid", FOREVER), preferred=ci.get("ifa_preferred", FOREVER))


def _ours(r: Any, idx: int) -> bool:
    """A route through this link that someone configured (kvmnet moves and restores it)."""
    return (r.get_attr("RTA_OIF") == idx and _table(r) != TABLE_LOCAL
            and r["proto"] not in (PROTO_KERNEL, PROTO_RA))


def _via_multipath(r: Any, idx: int) -> bool:
    hops = r.get_attr("RTA_MULTIPATH") or []
    return _table(r) != TABLE_LOCAL and any(h.get("oif") == idx for h in hops)


def _route(r: Any) -> Route:
    metrics = r.get_attr("RTA_METRICS")
    return Route(
        family=r["family"], dst=r.get_attr("RTA_DST"), dst_len=r["dst_len"], table=_table(r),
        gateway=r.get_attr("RTA_GATEWAY"), priority=r.get_attr("RTA_PRIORITY"),
        proto=r["proto"], scope=r["scope"], type=r["type"], tos=r["tos"], flags=r["flags"],
        prefsrc=r.get_attr("RTA_PREFSRC"), pref=r.get_attr("RTA_PREF"),
        metrics=dict(metrics["attrs"]) if metrics is not None else {})


def refusals(bridge: str, hb: HostBridge, links: Sequence[Link],
             wireless: Collection[str] = frozenset()) -> list[str]:
    """Why this migration must not run (empty: it may); each reason says the fix.
    `wireless`: the Wi-Fi links among the ports (kvmnet.backend.host.wireless_links)."""
    snap = {x.name: x for x in links}
    out = []
    br = snap[bridge]
    if br.exists and br.kind != "bridge":
        out.append(f"{bridge} exists and is a {br.kind or 'ethernet'} link, not a bridge: "
                   "pick another bridge name")
    for p in hb.ports:
        link = snap[p]
        if not link.exists:
            out.append(f"port {p} of {bridge} does not exist: fix ports: in the spec")
            continue
        if p in wireless:
            out.append(wireless_port(p))
        if link.master not in (None, bridge):
            out.append(f"{p} is already a port of {link.master}: take it out of "
                       f"{link.master} first, or use {link.master} as the bridge")
        if link.multipath:
            out.append(f"{p} carries multipath route(s) {', '.join(link.multipath)}: kvmnet "
                       "does not move those; remove them first and add them back on "
                       f"{bridge} afterwards")
    return out


# -- changing -----------------------------------------------------------------

def migrate(ipr: Any, bridge: str, hb: HostBridge, before: Sequence[Link],
            host: Host | None = None) -> list[str]:
    """Make `bridge` with hb's ports, moving their addresses and routes; returns notes.
    `host`: the spec's host section, for ports that are bonds or VLANs
    (kvmnet.apply.bridge.lower); without it the ports are NICs."""
    from kvmnet.apply.bridge import lower, routes6
    from kvmnet.model.spec import Host

    host = host or Host(bridges={bridge: hb})
    snap = {x.name: x for x in before}
    br = snap[bridge]
    nics = [snap[n] for n in nics_below(host, bridge)]
    mac = hb.mac or next((n.mac for n in nics if n.mac), None) or next(
        (snap[p].mac for p in hb.ports if snap[p].mac), None)
    made = lower.make(ipr, host, bridge, before, mac)
    lower.check_made(ipr, host, bridge)
    pending = lower.pending_nics(host, bridge, before)
    bi = _bridge(ipr, bridge, hb, br, [snap.get(p) or Link(p, False) for p in hb.ports],
                 mac, lower.bridge_options(host, bridge))
    made += lower.filtering(ipr, host, bridge)
    notes, moved, routes = _switch(ipr, host, bridge, bi, before, made)
    notes.insert(0, f"{moved} address(es) and {len(routes)} route(s) moved to {bridge}")
    notes[1:1] = made
    # (the NICs' routes are moved already)
    notes += routes6.default_routes(ipr, bi, bridge, hb, list(br.routes) + routes)
    for p in nics:
        pi = link_index(ipr, p.name)
        if not pending:
            copy_neighbours(ipr, pi, bi)  # the port forgets them with its last address
        for a in reversed(p.addresses):  # secondaries first: a primary takes them along
            nl(f"remove {a} from {p.name}", ipr.addr, "del", **addr_key(a, pi),
               ok=(errno.EADDRNOTAVAIL, errno.ENODEV))
        notes += routes6.outrank_ra_routes(ipr, pi, bi, p.name, bridge)
    if hb.dns:
        notes.append("dns: applies after a reboot (kvmnet does not edit resolv.conf live)")
    return notes


def _switch(ipr: Any, host: Host, bridge: str, bi: int, before: Sequence[Link],
            made: list[str]) -> tuple[list[str], int, list[Route]]:
    """The traffic moves to the bridge: its NICs' addresses, routes and neighbours, in
    the order that pauses it least (kvmnet.apply.bridge.lower). (notes, addresses moved,
    routes moved); what was made is added to `made`."""
    from kvmnet.apply.bridge import lower

    hb = host.bridges[bridge]
    snap = {x.name: x for x in before}
    br, nics = snap[bridge], [snap[n] for n in nics_below(host, bridge)]
    spare = lower.spare_nics(host, bridge, before)
    if spare:  # the bond forwards through its spare NICs first, then traffic moves
        made += lower.enslave_nics(ipr, host, bridge, only=spare)
        notes = _wait_up(ipr, bi, bridge, hb)
    elif not lower.pending_nics(host, bridge, before):  # NICs in the bridge or a bond
        notes = _wait_up(ipr, bi, bridge, hb)
        moved, routes = _move(ipr, bi, bridge, hb, br, nics)
        return notes, moved, routes
    else:  # no NIC to go first: addresses and routes wait on the bridge
        notes = []
    moved, routes = _move(ipr, bi, bridge, hb, br, nics)
    for p in nics:
        copy_neighbours(ipr, link_index(ipr, p.name), bi)
    made += lower.enslave_nics(ipr, host, bridge)
    if not spare:
        notes += _wait_up(ipr, bi, bridge, hb)
    return notes, moved, routes


def _move(ipr: Any, bi: int, bridge: str, hb: HostBridge, br: Link,
          nics: Sequence[Link]) -> tuple[int, list[Route]]:
    """The NICs' addresses, then the spec's, onto the bridge; their routes replaced
    onto it. (addresses moved, routes moved)"""
    moved = _addresses(ipr, bi, bridge, hb, br, nics)
    routes = [r for p in nics for r in p.routes]
    for r in routes:
        nl(f"move route {r} to {bridge}", ipr.route, "replace", **route_args(r, bi))
    return moved, routes


def _bridge(ipr: Any, bridge: str, hb: HostBridge, br: Link, ports: Sequence[Link],
            mac: str | None, vlan_opts: dict[str, Any]) -> int:
    """Create (or set up) the bridge with the MAC its files pin (the plan's pinned_host:
    the first NIC's permanent MAC), else the first NIC's MAC; up, ports enslaved."""
    opts: dict[str, Any] = {"br_stp_state": int(hb.stp)}
    if hb.forward_delay is not None:
        opts["br_forward_delay"] = hb.forward_delay * 100
    if not br.exists:
        extra: dict[str, Any] = {"address": mac} if mac else {}
        if hb.mtu:
            extra["mtu"] = hb.mtu
        nl(f"create bridge {bridge}",
           ipr.link, "add", ifname=bridge, kind="bridge", **opts, **vlan_opts, **extra)
    else:
        nl(f"set STP of {bridge}",
           ipr.link, "set", index=link_index(ipr, bridge), kind="bridge", **opts)
    bi = link_index(ipr, bridge)
    nl(f"bring {bridge} up", ipr.link, "set", index=bi, state="up")
    for p in ports:
        pi = link_index(ipr, p.name)
        if hb.mtu and p.mtu != hb.mtu:
            nl(f"set MTU of {p.name}", ipr.link, "set", index=pi, mtu=hb.mtu)
        if p.master != bridge:
            nl(f"enslave {p.name} to {bridge}", ipr.link, "set", index=pi, master=bi)
        if not p.up:
            nl(f"bring {p.name} up", ipr.link, "set", index=pi, state="up")
    return bi


def _wait_up(ipr: Any, bi: int, bridge: str, hb: HostBridge) -> list[str]:
    """Wait until the kernel has put the bridge's carrier on (a port forwards): until
    then it drops what it is given to send, so no traffic may move over before."""
    within = 3.0 + (2 * (hb.forward_delay if hb.forward_delay is not None else 15)
                    if hb.stp else 0)
    end = time.monotonic() + within
    while time.monotonic() < end:
        if ipr.get_links(bi)[0].get_attr("IFLA_OPERSTATE") == "UP":
            return []
        time.sleep(0.01)
    return [f"{bridge} had no carrier after {within:.0f} s (a port without link?)"]


def _addresses(ipr: Any, bi: int, bridge: str, hb: HostBridge, br: Link,
               ports: Sequence[Link]) -> int:
    """The ports' addresses, then the spec's, onto the bridge; how many moved."""
    have = {a.key for a in br.addresses}
    moved = 0
    for p in ports:
        for a in p.addresses:
            if a.key not in have:
                add_addr(ipr, bi, _moved(a, p.name, bridge), f"move {a} to {bridge}")
                have.add(a.key)
                moved += 1
    for iface in hb.address:
        v4 = iface.version == 4
        a = Addr(2 if v4 else 10, str(iface.ip), iface.network.prefixlen,
                 local=str(iface.ip) if v4 else None,
                 broadcast=str(iface.network.broadcast_address)
                 if v4 and iface.network.prefixlen < 31 else None)
        if a.key not in have:
            add_addr(ipr, bi, a, f"add {iface} to {bridge}")
            have.add(a.key)
    return moved


def copy_neighbours(ipr: Any, src: int, dst: int,
                    keep: Callable[[str], bool] | None = None) -> int:
    """Teach link `dst` the IP -> MAC pairs link `src` knows (as STALE: used at once,
    confirmed by the kernel soon after), so traffic that moves over does not wait for
    ARP/NDP. It matters on the way back: a bridge port asks, but the bridge takes the
    answer, and the port would only ask again a second later."""
    n = 0
    for e in ipr.get_neighbours(ifindex=src):
        ip, mac = e.get_attr("NDA_DST"), e.get_attr("NDA_LLADDR")
        if e["family"] not in (2, 10) or not e["state"] & NUD_USABLE or not ip or not mac:
            continue
        if keep is None or keep(mac):
            nl(f"copy neighbour {ip}", ipr.neigh, "replace", ifindex=dst, dst=ip, lladdr=mac,
               state=NUD_STALE, family=e["family"])
            n += 1
    return n


def _moved(a: Addr, port: str, bridge: str) -> Addr:
    """The address as the bridge carries it: label renamed, IPv6 without a new DAD."""
    label = a.label
    if label and label.startswith(port):
        label = bridge + label[len(port):]
    flags = a.flags | IFA_F_NODAD if a.family == 10 else a.flags
    return Addr(**{**asdict(a), "label": label, "flags": flags})


def addr_key(a: Addr, index: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"index": index, "family": a.family, "address": a.address,
                          "prefixlen": a.prefixlen}
    if a.local:
        kw["local"] = a.local
    return kw


def add_addr(ipr: Any, index: int, a: Addr, what: str) -> None:
    kw = addr_key(a, index)
    kw["scope"] = a.scope
    if a.broadcast:
        kw["broadcast"] = a.broadcast
    if a.label:
        kw["label"] = a.label
    if a.flags & SETTABLE_FLAGS:
        kw["IFA_FLAGS"] = a.flags & SETTABLE_FLAGS
    if (a.valid, a.preferred) != (FOREVER, FOREVER):
        kw["valid_lft"], kw["preferred_lft"] = a.valid, a.preferred
    nl(what, ipr.addr, "add", **kw, ok=(errno.EEXIST,))

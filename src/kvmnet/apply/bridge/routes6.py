"""The IPv6 default routes of a host bridge's live change (kvmnet.apply.bridge.migrate
calls both): the spec's gateways (gateway, gateway6), and the routes a port learned from
router advertisements, which stay the kernel's on the port while the bridge gets copies
that outrank them until it learns its own."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kvmnet.apply.bridge.links import Route
from kvmnet.apply.bridge.nl import TABLE_LOCAL, nl, route_args, table_of

if TYPE_CHECKING:
    from kvmnet.model.spec import HostBridge


def default_routes(ipr: Any, bi: int, bridge: str, hb: HostBridge,
                    there: Sequence[Route]) -> list[str]:
    """The spec's default route of each IP version (gateway, gateway6) where none moved
    over: IPv4 unless DHCP gives it, IPv6 (a link-local gateway is reached on the bridge)."""
    notes = []
    for version, fam in ((4, 2), (6, 10)):
        gw = hb.gateway_for(version)
        if gw is None or (version == 4 and hb.dhcp) or any(
                r.family == fam and r.dst_len == 0 for r in there):
            continue
        route = Route(fam, None, 0, gateway=str(gw), priority=hb.metric, proto=4)
        nl(f"add default route via {gw} on {bridge}",
           ipr.route, "replace", **route_args(route, bi))
        notes.append(f"default route via {gw} added")
    return notes


def outrank_ra_routes(ipr: Any, pi: int, bi: int, port: str, bridge: str) -> list[str]:
    """What a port learned from router advertisements stays on it: its IPv6 prefix
    routes and default route (the kernel's, RTF_ADDRCONF: a copy made over netlink
    would not be, and the kernel would then refuse the next advertisement's route and
    skip its prefixes). But the port gets no more traffic of its own, so each gets a
    copy on the bridge with a metric one lower (preferred), lasting as long as the
    original (RTA_EXPIRES): until the bridge has learned its own from the next
    advertisement, and after that, beside it, until both lapse. A rollback deletes the
    bridge, or removes them from one that existed (they are kvmnet's, proto static),
    and the port's are as they were."""
    n = 0
    for r in ipr.get_routes(family=10, oif=pi):
        dst, plen, metric = r.get_attr("RTA_DST"), r["dst_len"], r.get_attr("RTA_PRIORITY")
        if (table_of(r) == TABLE_LOCAL or not metric or r.get_attr("RTA_OIF") != pi
                or (dst or "").startswith(("fe80:", "ff")) or r["type"] != 1):
            continue
        expires = (r.get_attr("RTA_CACHEINFO") or {}).get("rta_expires") or 0
        copy = Route(10, dst, plen, table=table_of(r), gateway=r.get_attr("RTA_GATEWAY"),
                     priority=metric - 1, proto=4, pref=r.get_attr("RTA_PREF"))
        kw = route_args(copy, bi)
        if expires > 0:  # (clock ticks, 100 a second)
            kw["RTA_EXPIRES"] = struct.pack("=I", max(1, expires // 100))
        nl(f"copy route {copy} of {port} to {bridge}", ipr.route, "replace", **kw)
        n += 1
    return [f"{n} route(s) {port} learned from router advertisements copied to {bridge}"
            ] if n else []

"""Undo a host bridge migration: make every recorded link (links.Link) look as
it did before, exactly.

Each part compares the live link with the record first, so running restore
twice, or after a migration that stopped half way, is safe (the watchdog
retries a rollback that failed).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import replace
from socket import AF_BRIDGE
from typing import Any

from kvmnet.apply.bridge.links import FOREVER, Addr, Link
from kvmnet.apply.bridge.migrate import (
    IFA_F_NODAD,
    SETTABLE_FLAGS,
    add_addr,
    addr_key,
    copy_neighbours,
    link_index,
    nl,
    route_args,
    snapshot,
)
from kvmnet.errors import LiveError


def restore(ipr: Any, links: Sequence[Link]) -> list[str]:
    """Put every recorded link back as it was; returns what it did, one line each.

    The way back mirrors migrate(), so sessions survive it too: first every link
    gets its addresses and routes back (a route is *replaced*, which moves it off
    the bridge), then the extras go, then a bridge that did not exist hands its
    neighbours to its ports, drops its addresses and is deleted (taking its ports
    out), and last masters, MACs, MTUs, STP and up/down are set. Links it made below a
    bridge (bonds, VLANs: kvmnet.apply.bridge.lower) are deleted after it, top down: a
    bond lets its NICs go down, so they get their addresses and routes once more.
    """
    done: list[str] = []
    present = [x for x in links if x.exists]
    for link in present:
        if not ipr.link_lookup(ifname=link.name):
            raise LiveError(f"{link.name} is gone: cannot restore it")
    for link in present:
        done += _add_addresses(ipr, link)
    for link in present:
        done += _prune_addresses(ipr, link)
    for link in present:
        done += _add_routes(ipr, link)
    for link in present:
        done += _prune_routes(ipr, link)
    for link in links:
        if not link.exists and ipr.link_lookup(ifname=link.name):
            _retire(ipr, link.name, present)
            done.append(f"deleted {link.name}")
    for link in present:
        done += _settings(ipr, link)
    for link in present:  # deleting a bridge may have taken a route along, and a bond
        done += _add_addresses(ipr, link)  # lets its NICs go down (IPv6 addresses too)
        done += _add_routes(ipr, link)
        if not link.up:
            nl(f"bring {link.name} down", ipr.link, "set", index=link_index(ipr, link.name),
               state="down")
    return done


def _retire(ipr: Any, bridge: str, present: Sequence[Link]) -> None:
    """Delete a bridge kvmnet made without dropping a packet: its ports learn its
    neighbours (each the MACs its FDB puts behind that port), it gives up its addresses
    (so traffic takes the ports' routes while they still carry frames), and only then
    goes, taking its ports out in the same step."""
    bi = link_index(ipr, bridge)
    ports = {link_index(ipr, x.name) for x in present if _now(ipr, x).master == bridge}
    behind = {e.get_attr("NDA_LLADDR"): e["ifindex"]
              for e in ipr.get_neighbours(family=AF_BRIDGE) if e.get_attr("NDA_MASTER") == bi}
    for port in ports:
        copy_neighbours(ipr, bi, port, _behind(behind, port, len(ports) == 1))
    for a in reversed(snapshot(ipr, [bridge])[0].addresses):
        nl(f"remove {a} from {bridge}", ipr.addr, "del", **addr_key(a, bi),
           ok=(errno.EADDRNOTAVAIL,))
    nl(f"delete {bridge}", ipr.link, "del", index=bi, ok=(errno.ENODEV,))


def _behind(fdb: dict[str, int], port: int, only_port: bool) -> Callable[[str], bool]:
    """Is a MAC reached through `port` (by the bridge's FDB; with one port, any MAC)?"""
    def keep(mac: str) -> bool:
        return fdb.get(mac, port if only_port else -1) == port
    return keep


def _now(ipr: Any, want: Link) -> Link:
    return snapshot(ipr, [want.name])[0]


def _additive(cur: Sequence[Addr], want: Sequence[Addr]) -> bool:
    """Can `want` be reached by adding to `cur` (and dropping extras)? The kernel puts
    a new IPv4 address after the others, a new IPv6 one before those of its scope."""
    for family in (2, 10):
        have = [a.key for a in cur if a.family == family]
        wanted = [a.key for a in want if a.family == family]
        kept = [k for k in wanted if k in have]
        if kept != [k for k in have if k in kept]:
            return False
        if kept != (wanted[:len(kept)] if family == 2 else wanted[len(wanted) - len(kept):]):
            return False
    return True


def _kernel_order(addrs: Sequence[Addr]) -> list[Addr]:
    """The order to add `addrs` in so that the kernel lists them in this order: IPv4 as
    they are, IPv6 the other way round (each new one goes first)."""
    return [a for a in addrs if a.family != 10] + [a for a in reversed(addrs)
                                                   if a.family == 10]


def _add_addresses(ipr: Any, want: Link) -> list[str]:
    cur = _now(ipr, want)
    if not _additive(cur.addresses, want.addresses):
        return []  # _prune_addresses starts over
    idx = link_index(ipr, want.name)
    have = {a.key for a in cur.addresses}
    missing = [a for a in want.addresses if a.key not in have]
    for a in _kernel_order(missing):
        put_back(ipr, idx, a, f"put {a} back on {want.name}")
    return [f"{want.name}: {a} back" for a in missing]


def put_back(ipr: Any, index: int, a: Addr, what: str) -> None:
    """Add a recorded address again. An IPv6 one goes in without DAD (else it is
    tentative for a second, answering nothing, while sessions to it move back), then
    gets its own flags and lifetimes again (a change, which starts no DAD): exactly
    as it was."""
    if a.family != 10 or a.flags & IFA_F_NODAD:
        add_addr(ipr, index, a, what)
        return
    add_addr(ipr, index, replace(a, flags=a.flags | IFA_F_NODAD), what)
    kw = addr_key(a, index)
    kw["IFA_FLAGS"] = a.flags & SETTABLE_FLAGS
    if (a.valid, a.preferred) != (FOREVER, FOREVER):
        kw["valid_lft"], kw["preferred_lft"] = a.valid, a.preferred
    nl(what, ipr.addr, "replace", **kw)


def _prune_addresses(ipr: Any, want: Link) -> list[str]:
    idx = link_index(ipr, want.name)
    cur = _now(ipr, want)
    keys = {a.key for a in want.addresses}
    for a in reversed(cur.addresses):
        if a.key not in keys:
            nl(f"remove {a} from {want.name}", ipr.addr, "del", **addr_key(a, idx),
                ok=(errno.EADDRNOTAVAIL,))
    if [a.key for a in _now(ipr, want).addresses] == [a.key for a in want.addresses]:
        return []
    for a in reversed(_now(ipr, want).addresses):  # order differs: start over
        nl(f"remove {a} from {want.name}", ipr.addr, "del", **addr_key(a, idx),
            ok=(errno.EADDRNOTAVAIL,))
    for a in _kernel_order(want.addresses):
        put_back(ipr, idx, a, f"put {a} back on {want.name}")
    return [f"{want.name}: addresses {', '.join(map(str, want.addresses)) or 'none'}"]


def _add_routes(ipr: Any, want: Link) -> list[str]:
    idx = link_index(ipr, want.name)
    have = {r.key for r in _now(ipr, want).routes}
    missing = [r for r in want.routes if r.key not in have]
    done = [f"{want.name}: route {r} back" for r in missing]
    for _ in range(2):  # a route whose gateway needs another route goes in the 2nd pass
        left = []
        for r in missing:
            try:
                nl(f"put route {r} back on {want.name}",
                    ipr.route, "replace", **route_args(r, idx))
            except LiveError:
                left.append(r)
        missing = left
    if missing:
        raise LiveError(f"could not put back route(s) {', '.join(map(str, missing))} on "
                        f"{want.name}")
    return done


def _prune_routes(ipr: Any, want: Link) -> list[str]:
    idx = link_index(ipr, want.name)
    keys = {r.key for r in want.routes}
    extra = [r for r in _now(ipr, want).routes if r.key not in keys]
    for r in extra:
        nl(f"remove route {r} from {want.name}",
            ipr.route, "del", **route_args(r, idx), ok=(errno.ESRCH,))
    return [f"{want.name}: route {r} removed" for r in extra]


def _settings(ipr: Any, want: Link) -> list[str]:
    cur = _now(ipr, want)
    idx = link_index(ipr, want.name)
    done = []
    if cur.master != want.master:
        master = link_index(ipr, want.master) if want.master else 0
        nl(f"set master of {want.name}", ipr.link, "set", index=idx, master=master)
        done.append(f"{want.name}: master {want.master or 'none'}")
    if want.kind == "bridge" and (cur.stp, cur.forward_delay) != (want.stp, want.forward_delay):
        nl(f"set STP of {want.name}", ipr.link, "set", index=idx, kind="bridge",
            br_stp_state=want.stp, br_forward_delay=want.forward_delay)
        done.append(f"{want.name}: STP {want.stp}, forward delay {want.forward_delay}")
    if want.mac and cur.mac != want.mac:
        nl(f"set MAC of {want.name}", ipr.link, "set", index=idx, address=want.mac)
        done.append(f"{want.name}: MAC {want.mac}")
    if want.mtu and cur.mtu != want.mtu:
        nl(f"set MTU of {want.name}", ipr.link, "set", index=idx, mtu=want.mtu)
        done.append(f"{want.name}: MTU {want.mtu}")
    if want.up and not cur.up:
        nl(f"bring {want.name} up", ipr.link, "set", index=idx, state="up")
        done.append(f"{want.name}: up")
    return done


def differences(want: Sequence[Link], now: Sequence[Link]) -> list[str]:
    """What still differs between a record and a fresh snapshot (empty: restored)."""
    out = []
    cur = {x.name: x for x in now}
    for w in want:
        c = cur.get(w.name)
        if c is None or c.exists != w.exists:
            out.append(f"{w.name}: {'exists' if c and c.exists else 'missing'}")
            continue
        if not w.exists:
            continue
        for attr in ("master", "mac", "mtu", "up"):
            if getattr(w, attr) != getattr(c, attr):
                out.append(f"{w.name}: {attr} {getattr(c, attr)} (was {getattr(w, attr)})")
        if [a.key for a in w.addresses] != [a.key for a in c.addresses]:
            out.append(f"{w.name}: addresses {', '.join(map(str, c.addresses))} "
                       f"(were {', '.join(map(str, w.addresses))})")
        if sorted(map(str, w.routes)) != sorted(map(str, c.routes)):
            out.append(f"{w.name}: routes {', '.join(map(str, c.routes))} "
                       f"(were {', '.join(map(str, w.routes))})")
    return out

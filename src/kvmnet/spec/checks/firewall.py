"""Checks of guest firewalls: the sets NICs and networks name, the peers rules name,
rules that overlap or contradict, and defaults that cut a network's DHCP or DNS."""

from __future__ import annotations

from kvmnet.errors import close_matches
from kvmnet.model.firewall import STRICTNESS, FirewallRule, FirewallSet
from kvmnet.model.spec import Spec
from kvmnet.model.types import IPNet
from kvmnet.render.nwfilter import UnresolvedPeer, peer_blocks
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_

_NO_FILTER_MODES = ("macvtap", "overlay")   # no tap on a Linux bridge: nwfilter cannot


def firewalls(f: Findings, spec: Spec) -> None:
    for name, net in spec.networks.items():
        for j, s in enumerate(net.firewalls):
            _known(f, spec, ("networks", name, "firewalls", j), s)
        if (net.firewalls or net.antispoof) and net.mode in _NO_FILTER_MODES:
            f.error(("networks", name, "firewalls" if net.firewalls else "antispoof"),
                    f"guest firewalls need a tap on a Linux bridge; {name} is mode "
                    f"{net.mode}: remove it, or use a nat, route, open, isolated or "
                    "bridge network", refs=[("networks", name, "mode")])
    for gname, g in spec.guests.items():
        for i in range(len(g.interfaces)):
            _nic(f, spec, gname, i)
    for sname, fs in spec.firewalls.items():
        for i, rule in enumerate(fs.rules):
            _peer(f, spec, ("firewalls", sname, "rules", i), rule)
        _overlaps(f, spec, sname, fs)
    _dhcp_dns(f, spec)


def _known(f: Findings, spec: Spec, path: Path_, name: str) -> None:
    if name in spec.firewalls:
        return
    close = close_matches(name, list(spec.firewalls), n=1)
    hint = (f"did you mean {close[0]!r}?" if close else "define it under firewalls:, or "
            f"use one of {', '.join(spec.firewalls) or '(none yet)'}")
    f.error(path, f"unknown firewall set {name!r}: {hint}", refs=[("firewalls", name)])


def _nic(f: Findings, spec: Spec, gname: str, i: int) -> None:
    nic = spec.guests[gname].interfaces[i]
    path: Path_ = ("guests", gname, "interfaces", i)
    for j, s in enumerate(nic.firewalls or []):
        _known(f, spec, path + ("firewalls", j), s)
    sets, spoof = spec.nic_firewall(gname, i)
    net = spec.networks.get(nic.network) if nic.network else None
    if (nic.firewalls or nic.antispoof) and net is not None and net.mode in _NO_FILTER_MODES:
        f.error(path + ("firewalls" if nic.firewalls else "antispoof",),
                f"guest firewalls need a tap on a Linux bridge; network {nic.network} is "
                f"mode {net.mode}: remove it", refs=[("networks", nic.network or "", "mode")])
    if spoof and nic.ipv4 is None and not (net and net.mode in _NO_FILTER_MODES):
        where = "antispoof" if nic.antispoof else "network"
        f.error(path + (where,), "antispoof binds the NIC to its ipv4 reservation, and "
                "this NIC has none: add ipv4: ADDRESS (or antispoof: false)",
                key=where == "network", refs=[("networks", nic.network or "", "antispoof")])


def _peer(f: Findings, spec: Spec, path: Path_, rule: FirewallRule) -> None:
    if rule.guest is not None and rule.guest not in spec.guests:
        close = close_matches(rule.guest, list(spec.guests), n=1)
        f.error(path + ("guest",), f"unknown guest {rule.guest!r}"
                + (f": did you mean {close[0]!r}?" if close else ": name a guest of the "
                   "spec, or write peer: ADDRESS"), refs=[("guests", rule.guest)])
        return
    if rule.network is not None and rule.network not in spec.networks:
        f.error(path + ("network",), f"unknown network {rule.network!r}: name a network "
                "of the spec, or write peer: SUBNET", refs=[("networks", rule.network)])
        return
    try:
        peer_blocks(spec, rule)
    except UnresolvedPeer as e:
        key = "guest" if rule.guest else "network" if rule.network else "host"
        fix = ("give one of its NICs ipv4: (a reservation)" if rule.guest else
               "give it an ipv4: block" if rule.network else "give a network an address")
        f.error(path + (key,), f"{e}: the rule cannot name its address; {fix}, or write "
                "peer: ADDRESS", refs=[("guests",), ("networks",)])


def _within(inner: list[IPNet] | None, outer: list[IPNet] | None) -> bool:
    if outer is None:
        return True
    return inner is not None and all(
        any(y.version == x.version and y.subnet_of(x) for x in outer)  # type: ignore[arg-type]
        for y in inner)


def _meet(a: list[IPNet] | None, b: list[IPNet] | None) -> bool:
    if a is None or b is None:
        return True
    return any(x.version == y.version and x.overlaps(y) for x in a for y in b)


def _covers(a: FirewallRule, b: FirewallRule, spec: Spec) -> tuple[bool, bool]:
    """(overlap, a covers all of b) for two rules."""
    if a.direction != b.direction or "all" not in (a.proto, b.proto) and a.proto != b.proto:
        return False, False
    try:
        pa, pb = peer_blocks(spec, a), peer_blocks(spec, b)
    except UnresolvedPeer:
        return False, False
    ports_meet = not a.ports or not b.ports or any(x.overlaps(y) for x in a.ports
                                                   for y in b.ports)
    if not (_meet(pa, pb) and ports_meet):
        return False, False
    ports_in = not a.ports or bool(b.ports) and all(
        any(x.first <= y.first and y.last <= x.last for x in a.ports) for y in b.ports)
    return True, a.proto in ("all", b.proto) and _within(pb, pa) and ports_in


def _overlaps(f: Findings, spec: Spec, sname: str, fs: FirewallSet) -> None:
    for j, b in enumerate(fs.rules):
        for i, a in enumerate(fs.rules[:j]):
            meet, covers = _covers(a, b, spec)
            if not meet:
                continue
            path: Path_ = ("firewalls", sname, "rules", j)
            if a.action != b.action:
                f.warn(path, f"contradicts rule {i + 1} ({a.action} {a.direction} {a.proto}):"
                       f" they match the same traffic, and the first match wins"
                       + (", so this rule never applies; move it up or narrow rule "
                          f"{i + 1}" if covers else "; move this one up if it should win"))
            elif covers:
                f.warn(path, f"never matches: rule {i + 1} already {a.action}s all of it; "
                       "remove it")
            break


def _dhcp_dns(f: Findings, spec: Spec) -> None:
    """A NIC on a network with DHCP whose sets' strictest default_out drops what the
    guest sends to the host's dnsmasq (DHCP requests, DNS queries): warned once per set
    and network, with the rules to add. (default_in cannot cut them: the host's own
    answers are not filtered, kvmnet.render.nwfilter.)"""
    seen: set[tuple[str, str]] = set()
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            net = spec.networks.get(nic.network) if nic.network else None
            sets = [s for s in spec.nic_firewall(gname, i)[0] if s in spec.firewalls]
            if net is None or not sets:
                continue
            fss = [spec.firewalls[s] for s in sets]
            if net.mode == "bridge":
                _lan_dhcp(f, spec, sets, fss, nic.network or "", gname, seen)
            if not any(c.dhcp for c in net.all_ips()):
                continue
            strict = max((x.default_out for x in fss), key=lambda x: STRICTNESS[x])
            if strict == "accept" or _accepts(fss, "udp", 67) and _accepts(fss, "udp", 53):
                continue
            worst = next(s for s, x in zip(sets, fss, strict=True) if x.default_out == strict)
            if (worst, nic.network or "") in seen:
                continue
            seen.add((worst, nic.network or ""))
            f.warn(("firewalls", worst, "default_out"),
                   f"{strict}s the DHCP and DNS of network {nic.network} (guest {gname} "
                   "uses this set there): add the rules {direction: out, proto: udp, "
                   "ports: [67, 53]} and {direction: out, proto: tcp, ports: 53} to keep "
                   "them", refs=[("networks", nic.network or "")])


def _lan_dhcp(f: Findings, spec: Spec, sets: list[str], fss: list[FirewallSet],
              network: str, gname: str, seen: set[tuple[str, str]]) -> None:
    """A bridge network's LAN answers DHCP across the bridge, where default_in holds."""
    strict = max((x.default_in for x in fss), key=lambda x: STRICTNESS[x])
    if strict == "accept" or _accepts(fss, "udp", 68, "in"):
        return
    worst = next(s for s, x in zip(sets, fss, strict=True) if x.default_in == strict)
    if (worst, network) in seen:
        return
    seen.add((worst, network))
    f.warn(("firewalls", worst, "default_in"),
           f"{strict}s the DHCP answers of the LAN of bridge network {network} (guest "
           f"{gname} uses this set there), if it has DHCP: add the rule {{direction: in, "
           "proto: udp, ports: 68} to keep them", refs=[("networks", network)])


def _accepts(fss: list[FirewallSet], proto: str, port: int, direction: str = "out") -> bool:
    return any(r.direction == direction and r.action == "accept" and r.proto in (proto, "all")
               and (not r.ports or any(p.first <= port <= p.last for p in r.ports))
               for fs in fss for r in fs.rules)

"""A host bridge's ports that are bonds or VLANs (host.bonds, host.vlans): what the
bridge's host.bridge action makes below it, which NICs' addresses move to it, and the
live host's reasons to refuse (a NIC that is missing, Wi-Fi or another link's port; a
name taken by another kind of link; a bond's NIC that carries the host's address while
the bond is in no bridge the address could move to).

`lower_links` and `nics_below` are shared with apply (kvmnet.apply.bridge.lower), so
plan and apply agree on what one step touches."""

from __future__ import annotations

from collections.abc import Callable

from kvmnet.model.live import HostLink
from kvmnet.model.spec import Host

Problem = Callable[[str, HostLink | None, str], str | None]


def lower_links(host: Host, bridge: str) -> list[str]:
    """The bonds and VLANs the bridge's step makes or enslaves, each after what it is
    made on: a VLAN's bond before the VLAN."""
    out: list[str] = []
    for p in host.bridges[bridge].ports:
        v = host.vlans.get(p)
        if v is not None and v.link in host.bonds and v.link not in out:
            out.append(v.link)
        if (p in host.bonds or v is not None) and p not in out:
            out.append(p)
    return out


def nics_below(host: Host, bridge: str) -> list[str]:
    """The NICs whose addresses and routes move to the bridge: its plain ports and the
    NICs of the bonds that are its ports (not a VLAN's: its link keeps them)."""
    out: list[str] = []
    for p in host.bridges[bridge].ports:
        if p in host.bonds:
            out += host.bonds[p].ports
        elif p not in host.vlans:
            out.append(p)
    return out


def bond_nics(host: Host, bridge: str) -> list[str]:
    """The NICs of every bond the step touches (a port's, a VLAN's link's)."""
    return [n for b in lower_links(host, bridge) if b in host.bonds
            for n in host.bonds[b].ports]


def step_links(host: Host, bridge: str) -> list[str]:
    """Every link one host.bridge step records and puts back: the bridge, the bonds
    and VLANs below it, their NICs and its plain ports (in that order: a rollback
    deletes what it made from the top down)."""
    out = [bridge, *lower_links(host, bridge)]
    for n in [*bond_nics(host, bridge), *nics_below(host, bridge)]:
        if n not in out:
            out.append(n)
    return out


def first_nic(host: Host, port: str) -> str:
    """The NIC whose MAC a port carries: a bond's first NIC, a VLAN's link's."""
    if port in host.vlans:
        return first_nic(host, host.vlans[port].link)
    if port in host.bonds and host.bonds[port].ports:
        return host.bonds[port].ports[0]
    return port


def lower_diff(host: Host, links: dict[str, HostLink], bridge: str, port: str,
               problem: Problem) -> tuple[list[str], list[tuple[str, str]]]:
    """(plan lines, errors as (link, message)) for a bond or VLAN port of `bridge`;
    `problem` is plan.host's check of one NIC (missing, Wi-Fi, another's port)."""
    lines: list[str] = []
    errs: list[tuple[str, str]] = []
    for name in _chain(host, port):
        live = links.get(name)
        kind = "bond" if name in host.bonds else "vlan"
        master = bridge if name == port else None
        if live is None:
            lines.append(f"+ {_describe(host, name)}")
        elif live.kind != kind:
            errs.append((name, f"{name} exists on the host as a {live.kind or 'ethernet'} "
                         f"link, not a {kind}: pick another name"))
            continue
        elif kind == "vlan" and host.vlans[name].model_dump() != {
                "link": (live.vlan or ("", 0))[0], "id": (live.vlan or ("", 0))[1]}:
            errs.append((name, f"{name} exists as VLAN {live.vlan[1] if live.vlan else '?'} "
                         f"on {live.vlan[0] if live.vlan else '?'}: kvmnet does not change "
                         "a live VLAN; delete it or pick another name"))
        elif kind == "bond" and live.bond_mode not in (None, host.bonds[name].mode):
            errs.append((name, f"bond {name} runs in mode {live.bond_mode}, the spec says "
                         f"{host.bonds[name].mode}: kvmnet does not change a live bond's "
                         "mode; write its mode, or delete the bond first"))
        if master and (live is None or live.master != master):
            lines.append(f"~ {name}: enslave to {bridge}")
        if kind == "bond":
            lines += _bond_nics(host, links, name, problem, errs)
        elif host.vlans[name].link not in host.bonds:  # a NIC: it keeps its master
            nic = host.vlans[name].link
            why = problem(nic, links.get(nic), (links[nic].master or "") if nic in links
                          else "")
            if why:
                errs.append((nic, why))
    return lines, errs


def _chain(host: Host, port: str) -> list[str]:
    """The links a port's line covers: a VLAN's bond too, unless a bridge has the bond
    as its port (that bridge's step makes it, and plan orders it first)."""
    v = host.vlans.get(port)
    direct = {p for hb in host.bridges.values() for p in hb.ports}
    if v is not None and v.link in host.bonds and v.link not in direct:
        return [v.link, port]
    return [port]


def _describe(host: Host, name: str) -> str:
    if name in host.vlans:
        v = host.vlans[name]
        return f"VLAN {name}: id {v.id} on {v.link}"
    b = host.bonds[name]
    return f"bond {name}: {b.mode}, miimon {b.miimon} ms, ports {', '.join(b.ports)}"


def _bond_nics(host: Host, links: dict[str, HostLink], bond: str, problem: Problem,
               errs: list[tuple[str, str]]) -> list[str]:
    lines = []
    for nic in host.bonds[bond].ports:
        link = links.get(nic)
        why = problem(nic, link, bond)
        if link is None or why:
            errs.append((nic, why or f"{nic} is missing"))
            continue
        if link.master != bond:
            lines.append(f"~ {nic}: enslave to {bond} (it goes down and up)")
    return lines


def stranded(host: Host, links: dict[str, HostLink], bridge: str) -> list[tuple[str, str]]:
    """A bond only this bridge's VLAN is made on, whose NICs carry addresses: they
    would be lost (the bond is in no bridge they could move to)."""
    out = []
    direct = {p for hb in host.bridges.values() for p in hb.ports}
    for b in lower_links(host, bridge):
        if b not in host.bonds or b in direct:
            continue
        for nic in host.bonds[b].ports:
            link = links.get(nic)
            if link is not None and link.master != b and any(
                    not a.lower().startswith("fe80:") for a in link.addresses):
                out.append((nic, f"{nic} carries {', '.join(link.addresses)} and bond {b} "
                            "is in no bridge the addresses could move to: add "
                            f"{b} to a bridge's ports (host.bridges.br0: {{ports: [{b}], "
                            f"address: ...}}), or move them off {nic} first"))
    return out

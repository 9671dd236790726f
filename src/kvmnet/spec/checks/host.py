"""Checks of host.bonds and host.vlans, and of the bridge ports that name them: each NIC
in one bond or bridge only, each bond and VLAN used by a bridge, one name for one link,
the options each bond mode takes. (Wi-Fi, links that exist and the SSH session are the
live host's: plan checks them, kvmnet.plan.host_lower.)"""

from __future__ import annotations

from kvmnet.model.spec import HostBond, Spec
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_


def host_links(f: Findings, spec: Spec) -> None:
    host = spec.host
    _names(f, spec)
    for name, bond in host.bonds.items():
        _bond_options(f, name, bond)
    _bond_ports(f, spec)
    _vlans(f, spec)
    _unused(f, spec)


def _names(f: Findings, spec: Spec) -> None:
    """A name is one link: a bridge, a bond or a VLAN."""
    host = spec.host
    for name in host.bonds:
        if name in host.bridges:
            f.error(("host", "bonds", name), f"{name} is also a bridge under host.bridges: "
                    "give the bond another name (e.g. bond0)", key=True,
                    refs=[("host", "bridges", name)])
    for name in host.vlans:
        other = "bridge" if name in host.bridges else "bond" if name in host.bonds else None
        if other:
            f.error(("host", "vlans", name), f"{name} is also a {other} under host.{other}s: "
                    "give the VLAN another name (e.g. LINK.ID: bond0.100)", key=True,
                    refs=[("host", f"{other}s", name)])


def _bond_options(f: Findings, name: str, bond: HostBond) -> None:
    base: Path_ = ("host", "bonds", name)
    if not bond.ports:
        f.error((*base, "ports"), f"bond {name} has no ports: list its NICs, e.g. "
                "ports: [eno1, eno2]")
    if bond.lacp_rate is not None and bond.mode != "802.3ad":
        f.error((*base, "lacp_rate"), f"lacp_rate is for mode 802.3ad (LACP), and {name} "
                f"is {bond.mode}: remove lacp_rate, or write mode: 802.3ad",
                key=True, refs=[(*base, "mode")])
    if bond.xmit_hash_policy is not None and bond.mode == "active-backup":
        f.error((*base, "xmit_hash_policy"), "xmit_hash_policy is for modes 802.3ad and "
                "balance-xor; an active-backup bond sends on one NIC: remove it",
                key=True, refs=[(*base, "mode")])
    if bond.primary is not None and bond.mode != "active-backup":
        f.error((*base, "primary"), f"primary is for mode active-backup, and {name} is "
                f"{bond.mode}: remove primary, or write mode: active-backup",
                key=True, refs=[(*base, "mode")])
    elif bond.primary is not None and bond.primary not in bond.ports:
        f.error((*base, "primary"), f"primary {bond.primary} is not one of {name}'s ports "
                f"({', '.join(bond.ports) or 'none'}): name one of them",
                refs=[(*base, "ports")])
    seen: set[str] = set()
    for i, port in enumerate(bond.ports):
        if port in seen:
            f.error((*base, "ports", i), f"{port} is listed twice: remove one")
        seen.add(port)


def _bond_ports(f: Findings, spec: Spec) -> None:
    """A bond's port: a NIC (not a bridge, bond or VLAN of the spec), in no other bond
    and in no bridge."""
    host = spec.host
    bridge_of = {p: br for br, hb in host.bridges.items() for p in hb.ports}
    bond_of: dict[str, str] = {}
    for name, bond in host.bonds.items():
        for i, port in enumerate(bond.ports):
            path: Path_ = ("host", "bonds", name, "ports", i)
            kind = ("bridge" if port in host.bridges else "bond" if port in host.bonds
                    else "VLAN" if port in host.vlans else None)
            if kind:
                f.error(path, f"{port} is a {kind} of the spec: a bond's ports are NICs "
                        "(eno1, enp2s0), never bridges, bonds or VLANs",
                        refs=[("host", f"{kind.lower()}s", port)])
            elif port in bond_of and bond_of[port] != name:
                f.error(path, f"{port} is already a port of bond {bond_of[port]}: a NIC "
                        "can be in one bond only", refs=[("host", "bonds", bond_of[port])])
            elif port in bridge_of:
                br = bridge_of[port]
                i_br = host.bridges[br].ports.index(port)
                f.error(path, f"{port} is also a port of bridge {br}: a bond's NIC is in "
                        f"no bridge; put {name} in the bridge instead (host.bridges.{br}."
                        f"ports: [{name}])", refs=[("host", "bridges", br, "ports", i_br)])
            bond_of.setdefault(port, name)


def _vlans(f: Findings, spec: Spec) -> None:
    host = spec.host
    bond_of = {p: b for b, bond in host.bonds.items() for p in bond.ports}
    ids: dict[tuple[str, int], str] = {}
    for name, v in host.vlans.items():
        base: Path_ = ("host", "vlans", name)
        if v.link == name:
            f.error((*base, "link"), f"{name} cannot be its own link: name the NIC or bond "
                    "that carries the VLAN")
        elif v.link in host.bridges:
            f.error((*base, "link"), f"{v.link} is a bridge: make the VLAN on the bridge's "
                    f"uplink (a NIC or bond: link: {_uplink(spec, v.link)}), or give "
                    f"{v.link} vlan_filtering", refs=[("host", "bridges", v.link)])
        elif v.link in host.vlans:
            f.error((*base, "link"), f"{v.link} is itself a VLAN: kvmnet makes no VLAN in "
                    "a VLAN (QinQ); name the NIC or bond that carries both",
                    refs=[("host", "vlans", v.link)])
        elif v.link in bond_of:
            bond = bond_of[v.link]
            f.error((*base, "link"), f"{v.link} is a port of bond {bond}, which takes all "
                    f"its frames: make the VLAN on the bond (link: {bond})",
                    refs=[("host", "bonds", bond, "ports")])
        key = (v.link, v.id)
        if key in ids:
            f.error((*base, "id"), f"VLAN {v.id} on {v.link} is already {ids[key]}: one "
                    "sub-interface per VLAN and link", refs=[("host", "vlans", ids[key])])
        ids.setdefault(key, name)


def _uplink(spec: Spec, bridge: str) -> str:
    ports = spec.host.bridges[bridge].ports
    return ports[0] if ports else "eno1"


def _unused(f: Findings, spec: Spec) -> None:
    """Each bond and VLAN is a bridge's port (or, a bond, the link of VLANs): apply
    makes them with the bridge that uses them, and nothing else would."""
    host = spec.host
    ports = {p for hb in host.bridges.values() for p in hb.ports}
    links = {v.link for v in host.vlans.values()}
    for name in host.bonds:
        if name not in ports and name not in links:
            f.error(("host", "bonds", name), f"bond {name} is in no bridge and carries no "
                    f"VLAN: add it to a bridge's ports (host.bridges.br0: {{ports: [{name}]}}) "
                    f"or make VLANs on it (host.vlans.{name}.100: {{link: {name}, id: 100}})",
                    key=True)
    for name in host.vlans:
        if name not in ports:
            f.error(("host", "vlans", name), f"VLAN {name} is in no bridge: add it to one "
                    f"(host.bridges.br{host.vlans[name].id}: {{ports: [{name}]}})", key=True)

"""The links below a host bridge that kvmnet makes live (pyroute2): bonds and VLAN
sub-interfaces (host.bonds, host.vlans), and a bridge's VLAN filtering.

A NIC enters a bond only while it is down (the kernel refuses an up one), and going
down takes its routes with it. So when the bridge's step bonds NICs, migrate first
bonds the NICs that carry no address (spare_nics) and waits until the bridge forwards
through them; then it moves the addresses, routes and neighbours to the bridge (traffic
takes the bond at once) and only then takes the NIC that had them down and into the
bond. With no such NIC (a bond of one, or every NIC addressed) the addresses move
first and traffic waits on the bridge until the bond has its NICs: a longer pause.
Both are measured by tests/integration/test_hostbond.py. The way back
(kvmnet.apply.bridge.undo) deletes what was made, top down; a NIC the bond lets go
comes back down and is brought up with its addresses and routes again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from kvmnet.apply.bridge.links import Link
from kvmnet.apply.bridge.nl import link_index, nl
from kvmnet.errors import LiveError
from kvmnet.plan.host_lower import lower_links, nics_below
from kvmnet.plan.host_lower import step_links as step_links

if TYPE_CHECKING:
    from kvmnet.model.spec import Host

BOND_MODES = {"active-backup": 1, "balance-xor": 2, "802.3ad": 4}
LACP_RATES = {"slow": 0, "fast": 1}
XMIT_HASH = {"layer2": 0, "layer3+4": 1, "layer2+3": 2, "encap2+3": 3, "encap3+4": 4}


def refusals(host: Host, bridge: str, links: Sequence[Link]) -> list[str]:
    """Why the bonds and VLANs below `bridge` must not be made (apply checks again
    what plan checked: the host may have changed since)."""
    snap = {x.name: x for x in links}
    out = []
    for name in lower_links(host, bridge):
        kind = "bond" if name in host.bonds else "vlan"
        link = snap.get(name)
        if link is not None and link.exists and link.kind != kind:
            out.append(f"{name} exists and is a {link.kind or 'ethernet'} link, not a "
                       f"{kind}: pick another name")
        if kind == "bond":
            for nic in host.bonds[name].ports:
                n = snap.get(nic)
                if n is None or not n.exists:
                    out.append(f"port {nic} of bond {name} does not exist: fix ports: in "
                               "the spec")
                elif n.master not in (None, name):
                    out.append(f"{nic} is already a port of {n.master}: take it out of "
                               f"{n.master} first")
    return out


def make(ipr: Any, host: Host, bridge: str, links: Sequence[Link], mac: str | None
         ) -> list[str]:
    """Create the bonds (without their NICs yet) and VLANs the bridge needs that do
    not exist; returns notes."""
    snap = {x.name: x for x in links}
    notes = []
    for name in lower_links(host, bridge):
        if snap.get(name) is not None and snap[name].exists:
            continue
        if name in host.bonds:
            b = host.bonds[name]
            opts: dict[str, Any] = {"bond_mode": BOND_MODES[b.mode], "bond_miimon": b.miimon}
            if b.lacp_rate is not None:
                opts["bond_ad_lacp_rate"] = LACP_RATES[b.lacp_rate]
            if b.xmit_hash_policy is not None:
                opts["bond_xmit_hash_policy"] = XMIT_HASH[b.xmit_hash_policy]
            if mac:
                opts["address"] = mac
            nl(f"create bond {name}", ipr.link, "add", ifname=name, kind="bond", **opts)
            notes.append(f"bond {name} made ({b.mode})")
        else:
            v = host.vlans[name]
            nl(f"create VLAN {name}", ipr.link, "add", ifname=name, kind="vlan",
               link=link_index(ipr, v.link), vlan_id=v.id)
            notes.append(f"VLAN {name} made (id {v.id} on {v.link})")
        nl(f"bring {name} up", ipr.link, "set", index=link_index(ipr, name), state="up")
    return notes


def enslave_nics(ipr: Any, host: Host, bridge: str,
                 only: Collection[str] | None = None) -> list[str]:
    """Put each bond's NICs (those in `only`, if given) in it: down, enslaved, up; the
    bond's primary set once it is there."""
    notes = []
    for name in lower_links(host, bridge):
        b = host.bonds.get(name)
        if b is None:
            continue
        bi = link_index(ipr, name)
        for nic in b.ports:
            ni = link_index(ipr, nic)
            if ipr.get_links(ni)[0].get_attr("IFLA_MASTER") == bi or (
                    only is not None and nic not in only):
                continue
            nl(f"take {nic} down", ipr.link, "set", index=ni, state="down")
            nl(f"enslave {nic} to {name}", ipr.link, "set", index=ni, master=bi)
            nl(f"bring {nic} up", ipr.link, "set", index=ni, state="up")
            notes.append(f"{nic} in {name}")
        if b.primary is not None and (only is None or b.primary in only):
            nl(f"set {name}'s primary", ipr.link, "set", index=bi, kind="bond",
               bond_primary=link_index(ipr, b.primary))
    return notes


def spare_nics(host: Host, bridge: str, links: Sequence[Link]) -> list[str]:
    """Pending NICs without addresses, when another pending NIC has them: these go into
    the bond first, so the bridge forwards through them before anything moves, and the
    NIC with the host's addresses is bonded while the traffic already takes the bond
    (both reach the same LAN: that is what a bond is for). Empty: no such NIC."""
    snap = {x.name: x for x in links}
    pending = pending_nics(host, bridge, links)
    spare = [n for n in pending if not snap[n].addresses and not snap[n].routes]
    return spare if spare and len(spare) < len(pending) else []


def pending_nics(host: Host, bridge: str, links: Sequence[Link]) -> list[str]:
    """The NICs below the bridge that a bond of this step still has to take in."""
    snap = {x.name: x for x in links}
    return [n for n in nics_below(host, bridge)
            if any(n in host.bonds[b].ports for b in host.bonds)
            and (snap.get(n) is None or snap[n].master not in host.bonds)]


def filtering(ipr: Any, host: Host, bridge: str) -> list[str]:
    """A VLAN-aware bridge: the VLANs its ports (the uplinks) carry tagged. Filtering and
    the default PVID came with the bridge (bridge_options), before any port joined, so
    each port has the PVID untagged already."""
    hb = host.bridges[bridge]
    if not hb.vlan_filtering:
        return []
    for port in hb.ports:
        pi = link_index(ipr, port)
        for vid in hb.vlans:
            nl(f"let {port} carry VLAN {vid}", ipr.vlan_filter, "add", index=pi,
               vlan_info={"vid": vid})
    tagged = f"; {', '.join(map(str, hb.vlans))} tagged on its ports" if hb.vlans else ""
    return [f"VLAN filtering on {bridge} (pvid {hb.pvid}{tagged})"]


def bridge_options(host: Host, bridge: str) -> dict[str, Any]:
    """The bridge's VLAN options for its creation (IFLA_BR_*)."""
    hb = host.bridges[bridge]
    if not hb.vlan_filtering:
        return {}
    return {"br_vlan_filtering": 1, "br_vlan_default_pvid": hb.pvid}


def check_made(ipr: Any, host: Host, bridge: str) -> None:
    """Each bond and VLAN is there (a kernel without bonding or 8021q says no at once:
    a clear message instead of a half-made bridge)."""
    for name in lower_links(host, bridge):
        if not ipr.link_lookup(ifname=name):
            raise LiveError(f"{name} was not made: does this kernel have "
                            f"{'bonding' if name in host.bonds else '8021q (VLANs)'}?")

"""Guest NICs: attach, change and detach the NICs kvmnet manages, matched by MAC
(kvmnet's generated MACs are stable). kvmnet never creates or removes a guest."""

from __future__ import annotations

from lxml import etree

from kvmnet.model.firewall import PREFIX
from kvmnet.model.live import LiveNic
from kvmnet.model.spec import GuestNic
from kvmnet.plan.core import Action, Ctx, in_scope
from kvmnet.render.interface import OVN_BRIDGE, interface_element


def plan_forgotten_guests(ctx: Ctx) -> None:
    """A domain the spec no longer lists keeps no NIC kvmnet attached (within --scope),
    as a network the spec leaves out goes: else a NIC on a network removed since would
    stop the guest from starting. The domain's own NICs stay."""
    for dname, dom in sorted(ctx.live.domains.items()):
        if dname in ctx.spec.guests or not dom.managed_macs or not in_scope(dname, ctx.scope):
            continue
        managed = set(dom.managed_macs)
        for n in dom.nics:
            if n.mac not in managed:
                continue
            managed.discard(n.mac)
            ctx.actions.append(Action(
                "nic.detach", f"guest/{dname}/{n.mac}", "disruptive" if dom.running else "live",
                f"detach NIC {n.mac} ({n.type} {n.source}) from {dname}: the guest is no "
                "longer in the spec", xml=n.xml, domain=dname, mac=n.mac, live=dom.running,
                managed_macs=tuple(sorted(managed))))


def plan_guest(ctx: Ctx, gname: str) -> None:
    dom = ctx.live.domains.get(gname)
    guest = ctx.spec.guests[gname]
    if dom is None:
        ctx.warn(("guests", gname), f"guest {gname} is not defined on {ctx.live.uri}: its NICs "
                 "are not attached (kvmnet never creates guests); its DHCP reservations are "
                 "still made")
        return
    wanted_macs: set[str] = set()
    by_mac = {n.mac: n for n in dom.nics}
    # (a record of a NIC that is not there: an apply that stopped in between; dropped)
    managed = {m for m in dom.managed_macs if m in by_mac}
    for i, nic in enumerate(guest.interfaces):
        mac = ctx.macs[(gname, i)]
        wanted_macs.add(mac)
        el = interface_element(ctx.spec, gname, i, ctx.macs)
        _keep_foreign_filter(el, by_mac.get(mac))
        xml = etree.tostring(el, encoding="unicode")
        src = nic.network or nic.bridge
        kind = "network" if nic.network else "bridge"
        if nic.network and el.get("type") == "bridge":  # overlay: a port of br-int (OVN)
            src, kind = OVN_BRIDGE, "bridge"
        target = f"guest/{gname}/{mac}"
        cur = by_mac.get(mac)
        if cur is None:
            managed.add(mac)
            ctx.actions.append(Action(
                "nic.attach", target, "live",
                f"attach NIC {mac} ({kind} {src}) to {gname}"
                + (" (running: also live)" if dom.running else ""),
                xml=xml, domain=gname, mac=mac, live=dom.running,
                managed_macs=tuple(sorted(managed))))
            continue
        changes = _nic_changes(cur, nic, kind, src) + _filter_changes(cur, el)
        if changes:
            only_model = all(c.startswith("~ model") for c in changes)
            calm = all(c.startswith(("~ model", "~ firewall")) for c in changes)
            ctx.actions.append(Action(
                "nic.update", target, "disruptive" if dom.running and not calm else "live",
                f"change NIC {mac} of {gname}", tuple(changes), xml=xml, domain=gname, mac=mac,
                live=dom.running and not only_model))
    for n in dom.nics:
        if n.mac in wanted_macs:
            continue
        if n.mac in managed:
            managed.discard(n.mac)
            ctx.actions.append(Action(
                "nic.detach", f"guest/{gname}/{n.mac}", "disruptive" if dom.running else "live",
                f"detach NIC {n.mac} ({n.type} {n.source}) from {gname}: no longer in the spec",
                xml=n.xml, domain=gname, mac=n.mac, live=dom.running,
                managed_macs=tuple(sorted(managed))))
        else:
            ctx.warn(("guests", gname, "interfaces"), f"{gname} has NIC {n.mac} ({n.type} "
                     f"{n.source}) that is not in the spec and was not attached by kvmnet: "
                     "left alone (add it to the spec to manage it)")


def _keep_foreign_filter(el: etree._Element, cur: LiveNic | None) -> None:
    """A `<filterref>` kvmnet did not make stays on a NIC whose spec names no firewall."""
    if cur is None or cur.filterref is None or cur.filterref.startswith(PREFIX):
        return
    if el.find("filterref") is None:
        ref = etree.fromstring(cur.xml).find("filterref")
        if ref is not None:
            mtu = el.find("mtu")
            (mtu.addprevious(ref) if mtu is not None else el.append(ref))


def _filter_changes(cur: LiveNic, el: etree._Element) -> list[str]:
    """The guest firewall's `<filterref>`: kvmnet's is set, changed or removed; one it
    did not make stays when the spec asks for none."""
    ref = el.find("filterref")
    want = ref.get("filter") if ref is not None else None
    params = tuple(sorted((p.get("name", ""), p.get("value", ""))
                          for p in ref.iterfind("parameter"))) if ref is not None else ()
    if want is None and (cur.filterref is None or not cur.filterref.startswith(PREFIX)):
        return []
    if (cur.filterref, cur.filter_params) == (want, params):
        return []
    return [f"~ firewall: {_ref_text(cur.filterref, cur.filter_params)} -> "
            f"{_ref_text(want, params)} (live)"]


def _ref_text(name: str | None, params: tuple[tuple[str, str], ...]) -> str:
    if name is None:
        return "none"
    return name + "".join(f" {k}={v}" for k, v in params)


def _nic_changes(cur: LiveNic, nic: GuestNic, kind: str, src: str | None) -> list[str]:
    """What differs between a live NIC and the wanted one, as plan detail lines."""
    changes = []
    if cur.type != kind or cur.source != src:
        changes.append(f"~ source: {cur.type} {cur.source} -> {kind} {src}")
    if nic.model and cur.model != nic.model:
        changes.append(f"~ model: {cur.model} -> {nic.model} (at the guest's next boot)")
    if nic.portgroup and cur.portgroup != nic.portgroup:
        changes.append(f"~ portgroup: {cur.portgroup} -> {nic.portgroup}")
    if nic.mtu and cur.mtu != nic.mtu:
        changes.append(f"~ mtu: {cur.mtu} -> {nic.mtu}")
    return changes

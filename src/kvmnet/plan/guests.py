"""Guest NICs: attach, change and detach the NICs kvmnet manages, matched by MAC
(kvmnet's generated MACs are stable, and plan keeps the MAC a NIC has live: live_pins).
kvmnet never creates or removes a guest.

Each NIC kvmnet attached is recorded in the domain's metadata with its owner and its
index; a spec changes and detaches only its own owner's NICs. A record without an
owner (a kvmnet from before owners) is claimed by the spec that lists the guest."""

from __future__ import annotations

from lxml import etree

from kvmnet.model.derive import legacy_macs, nic_vlans, spec_macs
from kvmnet.model.firewall import PREFIX
from kvmnet.model.live import LiveDomain, LiveNic, LiveState, NicRecord
from kvmnet.model.spec import GuestNic, Spec
from kvmnet.plan.core import Action, Ctx, LeftAlone
from kvmnet.plan.fields import FieldChange, nic_change
from kvmnet.plan.vlans import check_bridge, kvmnet_sets, live_vlans, plan_drift, vlan_xml
from kvmnet.render.interface import OVN_BRIDGE, interface_element


def live_pins(spec: Spec, live: LiveState) -> dict[tuple[str, int], str]:
    """(guest, index) -> the MAC its NIC has live, for NICs without `mac:` that kvmnet
    attached: recorded with this owner and index, or (a kvmnet from before owners) with
    the MAC that kvmnet generated then. A NIC that exists never gets another MAC."""
    pins: dict[tuple[str, int], str] = {}
    explicit = spec_macs(spec)
    for gname, guest in spec.guests.items():
        dom = live.domains.get(gname)
        if dom is None or not dom.managed_macs:
            continue
        have = {n.mac for n in dom.nics}
        by_index = {r.index: r.mac for r in dom.records
                    if r.index is not None and r.owner in (spec.owner, None) and r.mac in have}
        for i, nic in enumerate(guest.interfaces):
            if nic.mac:
                continue
            mac = by_index.get(i) or next(
                (m for m in legacy_macs(gname, i)
                 if m in have and (rec := dom.record(m)) is not None and rec.owner is None),
                None)
            if mac is not None and mac not in explicit and mac not in pins.values():
                pins[(gname, i)] = mac
    return pins


class _Records:
    """A domain's record of kvmnet's NICs as this plan changes it, one action at a time:
    each action that changes it carries the whole record after it."""

    def __init__(self, dom: LiveDomain) -> None:
        have = {n.mac for n in dom.nics}
        # (a record of a NIC that is not there: an apply that stopped in between; dropped)
        self.by_mac = {m: r for m in dom.managed_macs
                       if m in have and (r := dom.record(m)) is not None}

    def set(self, rec: NicRecord) -> tuple[NicRecord, ...]:
        self.by_mac[rec.mac] = rec
        return self.now()

    def drop(self, mac: str) -> tuple[NicRecord, ...]:
        self.by_mac.pop(mac, None)
        return self.now()

    def now(self) -> tuple[NicRecord, ...]:
        return tuple(sorted(self.by_mac.values(), key=lambda r: r.mac))


def plan_forgotten_guests(ctx: Ctx) -> None:
    """A domain the spec no longer lists keeps no NIC this owner attached, as a network
    the spec leaves out goes: else a NIC on a network removed since would stop the guest
    from starting. The domain's own NICs stay; other owners' NICs are left alone (and
    so are those recorded before owners, unless --adopt names the guest)."""
    for dname, dom in sorted(ctx.live.domains.items()):
        if dname in ctx.spec.guests or not dom.managed_macs:
            continue
        records = _Records(dom)
        for n in dom.nics:
            rec = records.by_mac.get(n.mac)
            if rec is None:
                continue
            if rec.owner != ctx.owner and dname not in ctx.adopt:
                ctx.left_alone.append(LeftAlone(
                    f"guest/{dname}/{n.mac}", rec.owner,
                    "" if rec.owner else f"list guest {dname} in this spec (or pass --adopt "
                    f"{dname}) to manage or detach it"))
                continue
            ctx.actions.append(Action(
                "nic.detach", f"guest/{dname}/{n.mac}", "disruptive" if dom.running else "live",
                f"detach NIC {n.mac} ({n.type} {n.source}) from {dname}: the guest is no "
                "longer in the spec", xml=n.xml, domain=dname, mac=n.mac, live=dom.running,
                nic_records=records.drop(n.mac)))


def plan_guest(ctx: Ctx, gname: str) -> None:
    dom = ctx.live.domains.get(gname)
    guest = ctx.spec.guests[gname]
    if dom is None:
        ctx.warn(("guests", gname), f"guest {gname} is not defined on {ctx.live.uri}: its NICs "
                 "are not attached (kvmnet never creates guests); its DHCP reservations are "
                 "still made")
        return
    adopt = guest.adopt or gname in ctx.adopt
    wanted_macs: set[str] = set()
    by_mac = {n.mac: n for n in dom.nics}
    records = _Records(dom)
    moved: list[tuple[int, str, str]] = []
    for i, nic in enumerate(guest.interfaces):
        mac = ctx.macs[(gname, i)]
        wanted_macs.add(mac)
        rec = records.by_mac.get(mac)
        if rec is not None and ctx.others(rec.owner) and not adopt:
            ctx.error(("guests", gname, "interfaces", i),
                      f"NIC {mac} of {gname} was attached for owner {rec.owner} (another "
                      f"spec): give this NIC another mac:, or move it to this spec's owner "
                      f"({ctx.owner}) with 'adopt: true' on guests.{gname} (or --adopt {gname})")
            continue
        move = _plan_nic(ctx, gname, i, nic, dom, by_mac.get(mac), records, rec)
        if move is not None and not nic.mac:
            moved.append((i, *move))
    _reordered(ctx, gname, moved)
    for n in dom.nics:
        if n.mac in wanted_macs:
            continue
        rec = records.by_mac.get(n.mac)
        if rec is not None and ctx.others(rec.owner):
            ctx.left_alone.append(LeftAlone(f"guest/{gname}/{n.mac}", rec.owner))
        elif rec is not None:
            ctx.actions.append(Action(
                "nic.detach", f"guest/{gname}/{n.mac}", "disruptive" if dom.running else "live",
                f"detach NIC {n.mac} ({n.type} {n.source}) from {gname}: no longer in the spec",
                xml=n.xml, domain=gname, mac=n.mac, live=dom.running,
                nic_records=records.drop(n.mac)))
        else:
            ctx.warn(("guests", gname, "interfaces"), f"{gname} has NIC {n.mac} ({n.type} "
                     f"{n.source}) that is not in the spec and was not attached by kvmnet: "
                     "left alone (add it to the spec to manage it)")


def _reordered(ctx: Ctx, gname: str, moved: list[tuple[int, str, str]]) -> None:
    """NICs without mac: whose networks trade places: the spec's NICs were reordered. A
    generated MAC belongs to a NIC's place in the list, so each NIC would keep its MAC
    and move to the other network (the guest sees its eth0 on another LAN)."""
    if len(moved) < 2 or sorted(m[1] for m in moved) != sorted(m[2] for m in moved):
        return
    ctx.warn(("guests", gname, "interfaces"),
             f"the NICs of {gname} were reordered in the spec ("
             + "; ".join(f"NIC {i}: {old} -> {new}" for i, old, new in moved)
             + "): a NIC without mac: keeps the MAC of its place in the list, so apply "
             "would move each NIC, as the guest sees it, to another network. To keep each "
             "NIC on its network, put them back in their order, or pin their MACs: "
             + _pins(ctx, gname, moved))


def _pins(ctx: Ctx, gname: str, moved: list[tuple[int, str, str]]) -> str:
    """The mac: each reordered NIC needs to stay on its network: the MAC of the NIC that
    is on that network now."""
    now = {old: ctx.macs[(gname, i)] for i, old, _new in moved}
    return "; ".join(f"interfaces[{i}] ({new}): mac: \"{now[new]}\"" for i, _old, new in moved)


def _plan_nic(ctx: Ctx, gname: str, i: int, nic: GuestNic, dom: LiveDomain,
              cur: LiveNic | None, records: _Records, rec: NicRecord | None
              ) -> tuple[str, str] | None:
    """One NIC of the spec: attach it, change it, or record this owner on it. Returns
    (old source, new source) when it moves to another network or bridge."""
    mac = ctx.macs[(gname, i)]
    in_xml = vlan_xml(ctx)
    el = interface_element(ctx.spec, gname, i, ctx.macs, vlan_xml=in_xml)
    want = nic_vlans(ctx.spec, gname, i)
    check_bridge(ctx, gname, i)
    _keep_foreign_filter(el, cur)
    xml = etree.tostring(el, encoding="unicode")
    src = nic.network or nic.bridge
    kind = "network" if nic.network else "bridge"
    if nic.network and el.get("type") == "bridge":  # overlay: a port of br-int (OVN)
        src, kind = OVN_BRIDGE, "bridge"
    target = f"guest/{gname}/{mac}"
    # the index matters for a generated MAC (live_pins); a NIC with mac: keeps what it had
    mine = NicRecord(mac, ctx.owner, (rec.index if rec else None) if nic.mac else i,
                     None if in_xml else want)
    sets = dom.running and kvmnet_sets(ctx)
    if cur is None:
        ctx.actions.append(Action(
            "nic.attach", target, "live",
            f"attach NIC {mac} ({kind} {src}) to {gname}"
            + (" (running: also live)" if dom.running else ""),
            (nic_change("vlans", None, want.text()).line,) if want else (),
            xml=xml, domain=gname, mac=mac, live=dom.running, nic_records=records.set(mine),
            vlans=want, set_vlans=sets and want is not None))
        return None
    had = live_vlans(ctx, cur, rec)
    # a link kvmnet took down to put the tap on its VLANs first: an apply stopped midway
    down = sets and want is not None and cur.link_down
    changes = _nic_changes(cur, nic, kind, src) + _filter_changes(cur, el) + (
        [nic_change("vlans", had.text() if had else None, want.text() if want else None,
                    "live")] if had != want else []) + (
        [FieldChange("link", "link", "link", "down", "up", note="live")] if down else [])
    stale = rec is not None and ((rec.owner != ctx.owner and ctx.owner is not None)
                                 or rec.vlans != mine.vlans)
    if changes:
        only_model = all(c.field == "model" for c in changes)
        calm = all(c.field in ("model", "firewall", "vlans", "link") for c in changes)
        ctx.actions.append(Action(
            "nic.update", target, "disruptive" if dom.running and not calm else "live",
            f"change NIC {mac} of {gname}", tuple(c.line for c in changes), xml=xml,
            domain=gname, mac=mac, live=dom.running and not only_model,
            nic_records=records.set(mine) if stale else None,
            vlans=want, set_vlans=sets and (had != want or down), changes=tuple(changes)))
    elif stale and rec is not None:
        what = (f"update kvmnet's record of NIC {mac} of {gname}" if rec.owner == ctx.owner
                else f"move NIC {mac} of {gname} from owner {rec.owner} to {ctx.owner}"
                if rec.owner else f"record owner {ctx.owner} of NIC {mac} of {gname} "
                "(attached by a kvmnet from before owners)")
        ctx.actions.append(Action("nic.adopt", target, "live", what, domain=gname, mac=mac,
                                  nic_records=records.set(mine)))
    plan_drift(ctx, gname, i, dom, planned=bool(changes))
    if cur.type != kind or cur.source != src:
        return f"{cur.type} {cur.source}", f"{kind} {src}"
    return None


def _keep_foreign_filter(el: etree._Element, cur: LiveNic | None) -> None:
    """A `<filterref>` kvmnet did not make stays on a NIC whose spec names no firewall."""
    if cur is None or cur.filterref is None or cur.filterref.startswith(PREFIX):
        return
    if el.find("filterref") is None:
        ref = etree.fromstring(cur.xml).find("filterref")
        if ref is not None:
            mtu = el.find("mtu")
            (mtu.addprevious(ref) if mtu is not None else el.append(ref))


def _filter_changes(cur: LiveNic, el: etree._Element) -> list[FieldChange]:
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
    return [nic_change("firewalls", _ref_text(cur.filterref, cur.filter_params),
                       _ref_text(want, params), "live")]


def _ref_text(name: str | None, params: tuple[tuple[str, str], ...]) -> str:
    if name is None:
        return "none"
    return name + "".join(f" {k}={v}" for k, v in params)


def _nic_changes(cur: LiveNic, nic: GuestNic, kind: str, src: str | None
                 ) -> list[FieldChange]:
    """What differs between a live NIC and the wanted one (plan.fields.NIC_FIELDS names
    each field)."""
    changes = []
    if cur.type != kind or cur.source != src:
        changes.append(nic_change("network", f"{cur.type} {cur.source}", f"{kind} {src}"))
    if nic.model and cur.model != nic.model:
        changes.append(nic_change("model", cur.model, nic.model, "at the guest's next boot"))
    if nic.portgroup and cur.portgroup != nic.portgroup:
        changes.append(nic_change("portgroup", cur.portgroup, nic.portgroup))
    if nic.mtu and cur.mtu != nic.mtu:
        changes.append(nic_change("mtu", cur.mtu, nic.mtu))
    return changes

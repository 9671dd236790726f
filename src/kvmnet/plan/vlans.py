"""Guests' VLANs in the plan: where they are written (libvirt's `<vlan>`, or kvmnet's
record of the NIC and its tap: kvmnet.backend.vlans), what the live taps hold (drift: a
VLAN taken off a tap by hand), and kvmnet's libvirt qemu hook (libvirt 9).

Refused before anything changes: a NIC with VLANs on a live bridge that does not filter
VLANs, unless the spec makes that bridge VLAN-aware in the same apply.
"""

from __future__ import annotations

from dataclasses import replace

from kvmnet.model.derive import nic_bridge, nic_vlans
from kvmnet.model.live import LiveDomain, LiveNic, NicRecord
from kvmnet.model.spec import Spec
from kvmnet.model.vlan import Vlans, entries_text
from kvmnet.plan.core import Action, Ctx
from kvmnet.plan.fields import nic_change

HOOK_TARGET = "host/qemu-hook/kvmnet-vlans"


def vlan_xml(ctx: Ctx) -> bool:
    """Are VLANs written as libvirt's `<vlan>`? Yes where libvirt sets them itself
    (libvirt 11 and later), and where no host is read (test:///, the fake: XML only)."""
    v = ctx.live.vlans
    return v is None or v.native or not v.readable


def kvmnet_sets(ctx: Ctx) -> bool:
    """Does kvmnet set taps' VLANs itself (libvirt 9 on a host it reads)?"""
    v = ctx.live.vlans
    return v is not None and v.readable and not v.native


def live_vlans(ctx: Ctx, cur: LiveNic, rec: NicRecord | None) -> Vlans | None:
    """The VLANs a live NIC is given: its `<vlan>`, or kvmnet's record of it."""
    if vlan_xml(ctx):
        return cur.vlans
    return rec.vlans if rec is not None else None


def check_bridge(ctx: Ctx, gname: str, i: int) -> None:
    """A NIC with VLANs on a live bridge without vlan_filtering is refused (its frames
    would reach every port), unless the spec's host.bridges makes it VLAN-aware."""
    v = ctx.live.vlans
    spec = ctx.spec
    nic = spec.guests[gname].interfaces[i]
    if v is None or not v.readable or nic_vlans(spec, gname, i) is None:
        return
    bridge = nic_bridge(spec, nic)
    hb = spec.host.bridges.get(bridge or "")
    if bridge is None or (hb is not None and hb.vlan_filtering) or bridge not in v.bridges:
        return
    if not v.bridges[bridge][0]:
        key = "vlan" if nic.vlan is not None else "vlans" if nic.vlans else "portgroup"
        ctx.error(("guests", gname, "interfaces", i, key),
                  f"bridge {bridge} on {ctx.live.uri} does not filter VLANs (vlan_filtering "
                  "is off): a VLAN there would reach every port; list it under "
                  "host.bridges with vlan_filtering: true and its vlans:, or remove the "
                  "VLAN here")


def plan_drift(ctx: Ctx, gname: str, i: int, dom: LiveDomain, planned: bool) -> None:
    """A running guest's tap whose VLAN table is not what the NIC's VLANs say (taken
    off by hand, or the hook missed a start): put it back, live."""
    v = ctx.live.vlans
    want = nic_vlans(ctx.spec, gname, i)
    if planned or v is None or not v.readable or want is None or not dom.running:
        return
    mac = ctx.macs[(gname, i)]
    nic = next((n for n in dom.live_nics if n.mac == mac), None)
    if nic is None or nic.target is None:
        return
    have = v.ports.get(nic.target)
    if have is None or have == want.entries():
        return
    change = replace(nic_change("vlans", entries_text(have), entries_text(want.entries())),
                     label=f"VLANs on tap {nic.target}", drift="changed outside kvmnet")
    ctx.actions.append(Action(
        "nic.vlans", f"guest/{gname}/{mac}", "live",
        f"put NIC {mac} of {gname} ({nic.target}) back on its VLANs", (change.line,),
        domain=gname, mac=mac, live=True, vlans=want, set_vlans=True, changes=(change,)))


def hook_wanted(spec: Spec, ctx: Ctx) -> bool:
    """kvmnet's qemu hook is needed while any NIC on this host has VLANs kvmnet sets:
    this spec's, or another owner's (their records)."""
    for gname, g in spec.guests.items():
        if gname in ctx.live.domains and any(
                nic_vlans(spec, gname, i) is not None for i in range(len(g.interfaces))):
            return True
    return any(r.vlans is not None and ctx.others(r.owner)
               for d in ctx.live.domains.values() for r in d.records)


def plan_hook(ctx: Ctx) -> None:
    """Write kvmnet's qemu hook where kvmnet sets taps' VLANs and a NIC needs it;
    remove it when none does (also after an upgrade to a libvirt that sets them)."""
    v = ctx.live.vlans
    if v is None or not v.readable:
        return
    wanted = not v.native and hook_wanted(ctx.spec, ctx)
    if wanted and v.hook != "ok":
        ctx.actions.append(Action(
            "host.vlans", HOOK_TARGET, "live",
            "write kvmnet's libvirt qemu hook: it puts guests' taps on their VLANs at "
            "every start (this libvirt cannot)", ("+ libvirt qemu hook kvmnet-vlans",),
            text="install"))
    elif not wanted and v.hook is not None:
        ctx.actions.append(Action(
            "host.vlans", HOOK_TARGET, "live",
            "remove kvmnet's libvirt qemu hook: no NIC needs kvmnet to set its VLANs",
            ("- libvirt qemu hook kvmnet-vlans",), text="remove"))

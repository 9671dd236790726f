"""plan: (wanted Spec, LiveState) -> ordered Actions. Pure.

How the two sides are compared (the ignore rules):
- Both networks go through the same parser: wanted = parse(render(spec)),
  live = parse(persistent XMLDesc), so formatting and element order vanish.
- The top-level fields libvirt fills in itself (bridge name, MAC, STP and
  delay: LIBVIRT_FILLS) take the live value when the spec leaves them unset;
  those are not changes. Anything else set on the live network but not in
  the spec (an MTU, a domain, an IPv6 block added with `virsh net-edit`) is
  drift and shows up in the plan.
- `adopt`, `autostart` and `forwards` are not in libvirt's XML; autostart is
  compared with the network's autostart flag, the others elsewhere.
- DHCP reservations and DNS hosts differ -> networkUpdate calls, live and
  persistent together; any other difference -> redefine (+ restart when
  active), marked disruptive when running guests are attached.
- Guest NICs are matched by MAC (kvmnet's generated MACs are stable, salted with
  the spec's owner and the host; a NIC kvmnet attached keeps the MAC it has live).
- Owners: every network and guest NIC kvmnet makes records the spec's `owner`. A
  spec changes and removes only its owner's objects; other owners' are left alone
  (Plan.left_alone) and taken over only with adopt. A bare mark (a kvmnet from
  before owners) is claimed by the spec that lists the object; one no spec lists
  is left alone unless --adopt (or --scope) names it.
- `scope` (shell globs, `--scope`): when given, a managed network missing from
  the spec is removed only if its name matches one of them; the spec's networks
  must stay inside it. Guests are not scoped: their NICs follow their owner.

    core      Plan, Action, Update, Finding; the Ctx every step appends to
    host      host bridges, and collisions with the host's links, routes and MACs
    networks  libvirt networks: create, adopt, update live, redefine, remove
    netxml    network XML edits: ownership mark, UUID, virNetworkUpdate calls
    ovn       overlay networks (wraps kvmnet.plan.overlay_nb)
    guests    guest NICs: attach, change, detach
    firewalls guest firewalls: kvmnet's nwfilters (define, redefine, remove)
    forwards  port forwards: one firewall.sync
    names     host.resolve_guests: nsswitch.conf, systemd-resolved's links
"""

from __future__ import annotations

from kvmnet.model.derive import nic_macs
from kvmnet.model.live import LiveState
from kvmnet.model.spec import Spec
from kvmnet.model.uri import mac_host
from kvmnet.plan.core import Action, Ctx, Finding, Impact, LeftAlone, Plan, Update, in_scope
from kvmnet.plan.guests import live_pins, plan_forgotten_guests, plan_guest
from kvmnet.plan.host import (
    LIBVIRT_BRIDGED,
    check_host,
    ctx_bridge,
    host_needed,
    plan_host_bridges,
)
from kvmnet.plan.names import plan_names
from kvmnet.plan.networks import LIBVIRT_FILLS, attached, diff_lines, plan_network, plan_removals
from kvmnet.plan.netxml import mark_managed, with_uuid
from kvmnet.plan.overlay import plan_ovn
from kvmnet.plan.vlans import plan_hook as plan_vlan_hook

__all__ = [
    "LIBVIRT_BRIDGED",
    "LIBVIRT_FILLS",
    "Action",
    "Finding",
    "Impact",
    "LeftAlone",
    "Plan",
    "Update",
    "attached",
    "ctx_bridge",
    "diff_lines",
    "host_needed",
    "in_scope",
    "make_plan",
    "mark_managed",
    "with_uuid",
]


def make_plan(spec: Spec, live: LiveState, adopt: frozenset[str] = frozenset(),
              scope: tuple[str, ...] = (), host: str | None = None) -> Plan:
    """`host`: what generated MACs are salted with besides the owner (default: the
    host live.uri reaches, model.uri.mac_host, and 'test' when nothing real changes:
    test:///, the fake)."""
    if host is None:
        host = "test" if live.is_test else mac_host(live.uri)
    macs = nic_macs(spec, host=host,
                    pins=live_pins(spec, live))
    ctx = Ctx(spec, live, adopt, macs, tuple(scope))
    for name in spec.networks:
        if not in_scope(name, ctx.scope):
            ctx.error(("networks", name), f"{name} is outside --scope "
                      f"{' '.join(ctx.scope)}: rename it or widen the scope")
    check_host(ctx)
    plan_host_bridges(ctx)
    for name in spec.networks:
        if spec.networks[name].mode != "overlay":
            plan_network(ctx, name)
    if spec.ovn is not None:
        plan_ovn(ctx)
    firewalls = spec.has_firewalls() or bool(live.nwfilters and any(
        f.owned for f in live.nwfilters.values()))
    if firewalls:  # start-up: else not loaded
        from kvmnet.plan.firewalls import plan_nwfilter_removals, plan_nwfilters

        plan_nwfilters(ctx)
    for gname in spec.guests:
        plan_guest(ctx, gname)
    plan_forgotten_guests(ctx)
    plan_vlan_hook(ctx)
    if firewalls:
        plan_nwfilter_removals(ctx)
    plan_removals(ctx)
    plan_names(ctx)
    if live.firewall is not None or spec.has_forwards():  # start-up: else not loaded
        from kvmnet.plan.forwards import plan_firewall

        plan_firewall(ctx)
    return Plan(tuple(ctx.actions), tuple(ctx.findings), tuple(ctx.left_alone), spec.owner)

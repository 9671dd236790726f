"""Guest firewalls: the nwfilters kvmnet defines, redefines and removes.

Compared as canonical lines (kvmnet.parse.nwfilter), so a change by hand (virsh
nwfilter-edit) shows as drift with the rules it added and dropped. A redefinition is
live: libvirt re-instantiates the filter on every running NIC that uses it. Defines
come before the guests' NICs that name them; removals after (libvirt refuses to
undefine a filter in use). Sets before the combinations that reference them, and
removed after them.
"""

from __future__ import annotations

from kvmnet.model.firewall import ANTISPOOF, NIC_PREFIX, SET_PREFIX
from kvmnet.parse.nwfilter import filter_diff, filter_lines, filterrefs
from kvmnet.plan.core import Action, Ctx, in_scope
from kvmnet.render.nwfilter import UnresolvedPeer, wanted_filters

NO_DRIVER = ("this libvirt driver has no nwfilter (test:///): guest firewalls are "
             "planned, not applied")


def _wanted(ctx: Ctx) -> dict[str, str]:
    try:
        return wanted_filters(ctx.spec)
    except UnresolvedPeer as e:  # (the spec's checks report where)
        ctx.error(("firewalls",), f"cannot render the guest firewalls: {e}")
        return {}


def _order(name: str) -> tuple[int, str]:
    return (0 if name.startswith(SET_PREFIX) else 1, name)


def plan_nwfilters(ctx: Ctx) -> None:
    """Define and redefine what the spec needs (before the guests' NICs)."""
    wanted = _wanted(ctx)
    live = ctx.live.nwfilters
    if live is None and wanted and not ctx.live.is_test:
        ctx.error(("firewalls",), f"libvirt at {ctx.live.uri} answers no nwfilter call: its "
                  "nwfilter driver is missing (Debian 13: libvirt-daemon-driver-nwfilter; "
                  "modular daemons: virtnwfilterd)")
        return
    spoof = any(ANTISPOOF in filterrefs(x) for x in wanted.values())
    if live is not None and spoof and ANTISPOOF not in live:
        ctx.error(("firewalls",), f"antispoof uses libvirt's {ANTISPOOF} filter, which "
                  f"{ctx.live.uri} does not have: install libvirt's nwfilter definitions "
                  "(Debian: libvirt-daemon-config-nwfilter) and restart libvirtd")
    for name in sorted(wanted, key=_order):
        xml = wanted[name]
        target = f"nwfilter/{name}"
        cur = live.get(name) if live is not None else None
        if cur is None:
            ctx.actions.append(Action(
                "nwfilter.define", target, "live", f"define nwfilter {name}",
                tuple(f"+ {x}" for x in filter_lines(xml)[1:]), xml=xml,
                skipped=NO_DRIVER if live is None else None))
        elif not cur.owned:
            ctx.error(("firewalls",), f"nwfilter {name} exists and is not kvmnet's (its UUID "
                      f"is {cur.uuid}, kvmnet's would be another): undefine or rename it "
                      f"(virsh nwfilter-undefine {name})")
        else:
            diff = filter_diff(cur.xml, xml)
            if diff:
                ctx.actions.append(Action(
                    "nwfilter.redefine", target, "live",
                    f"redefine nwfilter {name}: running guests get the new rules at once",
                    tuple(diff), xml=xml))


def _in_scope(ctx: Ctx, name: str, xml: str) -> bool:
    """A filter of sets outside --scope belongs to another spec; a combination of no
    set (anti-spoofing alone) is the same for every spec: a scoped plan removes it
    when its own guests' NICs let go of it and no other guest's NIC names it."""
    if not ctx.scope:
        return True
    if name.startswith(SET_PREFIX):
        return in_scope(name.removeprefix(SET_PREFIX), ctx.scope)
    sets = [r.removeprefix(SET_PREFIX) for r in filterrefs(xml) if r.startswith(SET_PREFIX)]
    if sets:
        return all(in_scope(s, ctx.scope) for s in sets)
    users = {d for d, dom in ctx.live.domains.items()
             for n in (*dom.nics, *dom.live_nics) if n.filterref == name}
    return bool(users) and users <= set(ctx.spec.guests)


def plan_nwfilter_removals(ctx: Ctx) -> None:
    """Undefine kvmnet's filters the spec no longer needs (after the guests' NICs)."""
    live = ctx.live.nwfilters
    if not live:
        return
    wanted = set(_wanted(ctx))
    gone = [n for n, f in live.items() if f.owned and n not in wanted
            and _in_scope(ctx, n, f.xml)]
    for name in sorted(gone, key=lambda n: (0 if n.startswith(NIC_PREFIX) else 1, n)):
        ctx.actions.append(Action(
            "nwfilter.remove", f"nwfilter/{name}", "live",
            f"undefine nwfilter {name}: no longer in the spec",
            tuple(f"- {x}" for x in filter_lines(live[name].xml)[1:])))

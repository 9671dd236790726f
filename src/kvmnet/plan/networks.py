"""libvirt networks: create, adopt, update live or redefine, start, autostart, remove.

Wanted and live both go through render.network_parse before they are compared; the
ignore rules are in the package docstring (kvmnet.plan)."""

from __future__ import annotations

import re
from typing import TypeVar

from lxml import etree

from kvmnet.model.derive import dhcp_hosts
from kvmnet.model.live import LiveNetwork, LiveState
from kvmnet.model.spec import Dns, Model, Network
from kvmnet.model.types import not_one_line
from kvmnet.parse.network import parse_network
from kvmnet.plan.core import Action, Ctx, Impact, LeftAlone, in_scope
from kvmnet.plan.drift import mark_drift, record
from kvmnet.plan.fields import FieldChange, diff
from kvmnet.plan.netxml import (
    dns_updates,
    host_updates,
    keep_live_fills,
    mark_managed,
    record_updates,
    stp_off,
    with_record,
    with_uuid,
)
from kvmnet.render import dnsmasq
from kvmnet.render.network import build_network, network_xml

_T = TypeVar("_T", bound=Model)


def attached(live: LiveState, network: str, running_only: bool = False) -> list[str]:
    """Domains with a NIC on a network (persistent or live config)."""
    out = []
    for d in live.domains.values():
        if running_only and not d.running:
            continue
        if any(n.type == "network" and n.source == network for n in d.nics + d.live_nics):
            out.append(d.name)
    return sorted(out)


LIBVIRT_FILLS = ("bridge", "mac", "stp", "delay")  # libvirt's own values when XML omits them


def _normalise(wanted: Network, live: Network) -> Network:
    """The top-level fields libvirt fills in (LIBVIRT_FILLS) take the live value when
    the spec leaves them unset, and so does the way an address block writes its
    prefix (prefix= or netmask=). DHCP reservations and DNS hosts are sets: the same
    ones in another order are no change (a live update can only append, so the live
    order after one differs from the spec's)."""
    fill: dict[str, object] = {k: getattr(live, k) for k in LIBVIRT_FILLS
                               if getattr(wanted, k) is None and getattr(live, k) is not None}
    for key in ("ipv4", "ipv6"):
        w, lv = getattr(wanted, key), getattr(live, key)
        if w is not None and lv is not None:
            fill[key] = w.model_copy(update={"xml_prefix": lv.xml_prefix,
                                             "hosts": _in_order_of(w.hosts, lv.hosts)})
    if len(wanted.more_ips) == len(live.more_ips):
        fill["more_ips"] = [w.model_copy(update={"xml_prefix": lv.xml_prefix,
                                                 "hosts": _in_order_of(w.hosts, lv.hosts)})
                            for w, lv in zip(wanted.more_ips, live.more_ips, strict=True)]
    if wanted.dns is not None and live.dns is not None:
        fill["dns"] = wanted.dns.model_copy(
            update={"hosts": _in_order_of(wanted.dns.hosts, live.dns.hosts)})
    return wanted.model_copy(update=fill)


def _in_order_of(wanted: list[_T], live: list[_T]) -> list[_T]:
    """`live` when it holds the same items as `wanted` (in any order), else `wanted`."""
    if wanted == live:  # the usual cases need no sort: the same order, or other lengths
        return live
    if len(wanted) != len(live):
        return wanted

    def key(x: _T) -> str:
        return x.model_dump_json()

    return live if sorted(map(key, wanted)) == sorted(map(key, live)) else wanted


LIBVIRT_BRIDGED = ("nat", "route", "open", "isolated")  # libvirt makes the bridge


def default_stp(spec_net: Network) -> bool:
    """Spanning tree off on a bridge kvmnet has libvirt make, unless the spec says `stp`:
    its only ports are guests' taps (and libvirt's own), so there is no loop for STP to
    break, while with STP on the kernel holds every port of a new bridge in listening and
    learning for twice the forward delay (at least 2 x 2 s), which every restart of the
    network costs its running guests. Told only at create: an existing network keeps
    its bridge's STP (libvirt's default is on)."""
    return spec_net.stp is None and spec_net.mode in LIBVIRT_BRIDGED


def _xml_fields(net: Network) -> Network:
    return net.model_copy(update={"adopt": False, "autostart": True, "forwards": [],
                                  "firewalls": [], "antispoof": False})


# libvirt masquerades IPv6 (<nat ipv6='yes'/>) since 6.5.0; an older one drops the
# attribute without a word, and the guests' IPv6 would only be routed
NAT66_SINCE = 6_005_000


def _nat66_refused(ctx: Ctx, name: str, net: Network) -> bool:
    v = ctx.live.libvirt_version
    if not (net.nat and net.nat.ipv6) or v is None or v >= NAT66_SINCE:
        return False
    ctx.error(("networks", name, "nat", "ipv6"),
              f"nat: {{ipv6: true}} needs libvirt 6.5 or newer to masquerade IPv6; "
              f"{ctx.live.uri} runs libvirt {v // 1_000_000}.{v // 1000 % 1000}."
              f"{v % 1000}, which would ignore it: remove it and make the LAN's router "
              f"route the network's IPv6 prefix to this host (mode: route, whose upstream "
              "route `kvmnet render` writes), or upgrade libvirt")
    return True


def plan_network(ctx: Ctx, name: str) -> None:
    spec_net = ctx.spec.networks[name]
    if _nat66_refused(ctx, name, spec_net):
        return
    xml = network_xml(ctx.spec, name, ctx.macs)
    wanted = _xml_fields(parse_network(xml).network)
    if _extra_overrides(ctx, name, wanted):
        return
    ln = ctx.live.networks.get(name)
    target = f"network/{name}"
    if ln is None:
        details = describe_new(wanted)
        if default_stp(spec_net):
            xml = stp_off(xml)
            wanted = wanted.model_copy(update={"stp": False})
            details = (*details[:1], "+ STP off (kvmnet's default for a bridge only guests "
                       "use; `stp: true` turns it on)", *details[1:])
        xml = with_record(xml, record(wanted))
        ctx.actions.append(Action(
            "network.create", target, "live",
            f"define, start and {'autostart' if spec_net.autostart else 'not autostart'} "
            f"{wanted.mode} network {name}", details, xml=xml, autostart=spec_net.autostart))
        return
    if ln.problem:  # never kvmnet's (read.py): nothing to compare with, nor to adopt
        ctx.error(("networks", name),
                  f"network {name} already exists on {ctx.live.uri}, is not managed by kvmnet, "
                  f"and kvmnet cannot read it ({ln.problem}): rename the network in the spec")
        return
    if not _claim(ctx, name, ln, spec_net.adopt or name in ctx.adopt):
        return
    live_net = _xml_fields(ln.network)
    wanted = _normalise(wanted, live_net)
    if wanted != live_net:
        if wanted.mode in LIBVIRT_BRIDGED and live_net.mode in LIBVIRT_BRIDGED:
            xml = keep_live_fills(xml, ln.network)
        _network_change(ctx, name, wanted, live_net, ln, with_uuid(xml, ln.uuid))
    if not ln.active:
        ctx.actions.append(Action("network.start", target, "live", f"start network {name}"))
    if ln.autostart != spec_net.autostart:
        ctx.actions.append(Action(
            "network.autostart", target, "live",
            f"{'enable' if spec_net.autostart else 'disable'} autostart of {name}",
            autostart=spec_net.autostart))


def _claim(ctx: Ctx, name: str, ln: LiveNetwork, adopt: bool) -> bool:
    """Is the live network this spec's to change? Its owner's: yes. Not kvmnet's, or
    another owner's: only with adopt (an action that marks it as this owner's). Marked
    by a kvmnet from before owners: the spec that lists it claims it (marks it)."""
    if ln.managed and ln.owner == ctx.owner:
        return True
    if not ln.managed and not adopt:
        ctx.error(("networks", name),
                  f"network {name} already exists on {ctx.live.uri} and is not managed by "
                  f"kvmnet: to let kvmnet take it over, add 'adopt: true' to networks."
                  f"{name} (or pass --adopt {name}); plan then shows the difference; "
                  "or rename the network in the spec")
        return False
    if ln.managed and ctx.others(ln.owner) and not adopt:
        ctx.error(("networks", name),
                  f"network {name} on {ctx.live.uri} is owned by {ln.owner} (another spec): "
                  f"rename the network in this spec, or move it to this spec's owner "
                  f"({ctx.owner}) with 'adopt: true' on networks.{name} (or --adopt {name})")
        return False
    restart = ln.active and not ln.split_config
    what = (f"adopt {name}: mark it as managed by kvmnet" if not ln.managed else
            f"adopt {name}: move it from owner {ln.owner} to {ctx.owner}" if ln.owner else
            f"claim {name}: record its owner {ctx.owner} (marked by a kvmnet from before "
            "owners)")
    ctx.actions.append(Action(
        "network.adopt", f"network/{name}", _restart_impact(ctx, name) if restart else "live",
        what + (" (this driver shows the mark only after a restart)" if restart
                else " (no restart)"),
        xml=mark_managed(ln.xml, ctx.owner, record(_xml_fields(ln.network))),
        restart=restart))
    return True


def _strip_live_updatable(net: Network) -> Network:
    ips = {k: getattr(net, k) for k in ("ipv4", "ipv6")}
    upd: dict[str, object] = {k: v.model_copy(update={"hosts": []}) for k, v in ips.items() if v}
    upd["more_ips"] = [c.model_copy(update={"hosts": []}) for c in net.more_ips]
    if net.dns is not None:
        dns = net.dns.model_copy(update={"hosts": [], "txt": [], "srv": []})
        # a <dns> that only holds hosts and records is no <dns> at all: the first DNS
        # host or record comes (and the last one goes) live too
        upd["dns"] = None if dns == Dns() else dns
    return net.model_copy(update=upd)


def _network_change(ctx: Ctx, name: str, wanted: Network, live: Network, ln: LiveNetwork,
                    xml: str) -> None:
    target = f"network/{name}"
    options = _option_lines(live, wanted)
    changes = tuple(mark_drift(diff(live, wanted), live, wanted, ln.record))
    details = (*(c.line for c in changes), *_extra_diff(live, wanted), *options)
    xml = with_record(xml, record(wanted))
    calls = None
    if _strip_live_updatable(wanted) == _strip_live_updatable(live) and not options:
        calls = [host_updates(wanted, live, ln.xml), dns_updates(wanted, live),
                 record_updates(wanted, live)]
    if calls is not None and all(c is not None for c in calls):  # (None: libvirt refuses)
        updates = tuple(u for c in calls for u in c or ())
        records = any(u.section in ("dns-txt", "dns-srv") for u in updates)
        ctx.actions.append(Action(
            "network.update", target, "live",
            f"update {name} live ({len(updates)} change(s), no "
            + ("network restart; libvirt restarts its dnsmasq for TXT/SRV records"
               if records and ln.active else "restart") + ")", details,
            xml=xml, updates=updates, live=ln.active, changes=changes))
        return
    guests = attached(ctx.live, name, running_only=True)
    impact: Impact = _restart_impact(ctx, name) if ln.active else "live"
    if not ln.active:
        summary = f"redefine {name} (inactive: no restart needed)"
    elif guests:
        summary = (f"redefine and restart {name}: guests {', '.join(guests)} lose network "
                   f"{expected_gap(wanted)} and are reconnected")
    else:
        summary = f"redefine and restart {name} (no running guests attached)"
    ctx.actions.append(Action("network.redefine", target, impact, summary, details, xml=xml,
                              restart=ln.active, changes=changes))


def _option_lines(old: Network, new: Network) -> tuple[str, ...]:
    """The dnsmasq options kvmnet writes (render.dnsmasq) that go and come, as the plan
    shows them; any of them needs a restart (libvirt updates none of them live)."""
    a, b = (dnsmasq.options(n, [h for c in n.all_ips() for h in c.hosts]) for n in (old, new))
    return (tuple(f"- dnsmasq option: {o}" for o in a if o not in b)
            + tuple(f"+ dnsmasq option: {o}" for o in b if o not in a))


# The gap running guests see when their network restarts, as bench/restart_gap.py
# measured it (BENCHMARKS.md, "Restart-needing changes"): a new bridge with STP on
# holds its ports in listening and learning for twice the forward delay (the kernel's
# minimum: 2 x 2 s); with STP off the taps are back the moment the bridge exists.
STP_ON_GAP = "about 4-5 s"
STP_OFF_GAP = "for under a second"


def expected_gap(net: Network) -> str:
    """How long running guests lose their network when `net` (as it will be) restarts."""
    if net.mode not in LIBVIRT_BRIDGED:
        return "for a moment"
    if net.stp is False:
        return STP_OFF_GAP
    return (f"for {STP_ON_GAP} (the bridge has STP on: a new one holds its ports for twice "
            "the forward delay; `stp: false` makes it under a second)")


def _restart_impact(ctx: Ctx, name: str) -> Impact:
    return "disruptive" if attached(ctx.live, name, running_only=True) else "restart"


def _extra_overrides(ctx: Ctx, name: str, wanted: Network) -> bool:
    """xml_extra holds XML kvmnet does not model, kept verbatim; it must not change what
    the spec's own keys say (an isolated network that is NAT, an uplink, DNS hosts),
    or the plan would show keys that are not what libvirt gets. Compared on what
    libvirt gets: the network rendered with and without it, read back."""
    net = ctx.spec.networks[name]
    if not net.xml_extra:
        return False
    bare = net.model_copy(update={"xml_extra": {}})
    xml = etree.tostring(build_network(name, bare, hosts=dhcp_hosts(ctx.spec, name, ctx.macs)))
    without = _xml_fields(parse_network(xml).network)
    changed = diff_lines(without, wanted, extra=False)
    if changed:
        ctx.error(("networks", name, "xml_extra"),
                  f"xml_extra changes what network {name}'s own keys say "
                  f"({'; '.join(changed)}): write that in the spec's keys, and remove it "
                  "from xml_extra")
    return bool(changed)


def describe_new(net: Network) -> tuple[str, ...]:
    """Everything a new network will hold, as libvirt gets it: a '+ field value' line
    per value (plan.fields' names and units; mode first; what libvirt fills in itself
    aside), then every xml_extra element or attribute verbatim, on one line each: a
    reviewer of the plan sees all of it, dnsmasq options included."""
    lines = [f"+ mode {net.mode}"]
    lines += [c.line for c in new_fields(net) if c.field != "mode"]
    hosts = [h for c in net.all_ips() for h in c.hosts]
    lines += [f"+ dnsmasq option: {o}" for o in dnsmasq.options(net, hosts)]
    lines += _extra_lines("+", net.xml_extra)
    if any("dnsmasq" in x for xs in net.xml_extra.values() for x in xs):
        lines.append("! xml_extra passes options straight to dnsmasq, which runs as root: "
                     "review each one")
    return tuple(lines)


def new_fields(net: Network) -> list[FieldChange]:
    """The fields a new network sets (those not at their default), as changes from none."""
    return diff(None, net, defaults=False)


def _extra_lines(sign: str, extra: dict[str, list[str]]) -> list[str]:
    return [f"{sign} xml_extra[{path!r}]: {one_line(x)}" for path in sorted(extra)
            for x in extra[path]]


def one_line(text: str) -> str:
    """Verbatim XML shown on one line: white space between tags dropped, any other line
    break or control character escaped (a plan is read line by line)."""
    text = re.sub(r">\s+<", "><", text.strip())
    return "".join(c if not_one_line(c) is None else c.encode("unicode_escape").decode()
                   for c in text)


def diff_lines(old: Network, new: Network, extra: bool = True) -> list[str]:
    """Human diff of two networks: a '~ field old -> new' line per changed field ('+'
    and '-' for one set or unset; plan.fields' names and units), and per xml_extra
    element that went or came (extra=False: leave xml_extra out)."""
    return [c.line for c in diff(old, new)] + (_extra_diff(old, new) if extra else [])


def _extra_diff(old: Network, new: Network) -> list[str]:
    gone = {p: [x for x in xs if x not in new.xml_extra.get(p, [])]
            for p, xs in old.xml_extra.items()}
    came = {p: [x for x in xs if x not in old.xml_extra.get(p, [])]
            for p, xs in new.xml_extra.items()}
    return _extra_lines("-", gone) + _extra_lines("+", came)


def plan_removals(ctx: Ctx) -> None:
    """Managed networks of this owner the spec no longer lists (within --scope) are
    removed; other owners' are left alone (and listed as such)."""
    for name, ln in sorted(ctx.live.networks.items()):
        if name in ctx.spec.networks or not ln.managed or not in_scope(name, ctx.scope):
            continue
        if not ctx.removable(name, ln):
            ctx.left_alone.append(LeftAlone(
                f"network/{name}", ln.owner,
                "" if ln.owner else f"list it in this spec (or pass --adopt {name}) to "
                "manage or remove it"))
            continue
        guests = attached(ctx.live, name)
        running = attached(ctx.live, name, running_only=True)
        summary = f"stop and undefine network {name}"
        if guests:
            summary += f" (guests attached: {', '.join(guests)})"
        ctx.actions.append(Action(
            "network.remove", f"network/{name}", "disruptive" if running else "live", summary,
            needs_allow_destroy=bool(guests), restart=ln.active))

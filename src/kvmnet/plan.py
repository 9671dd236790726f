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
- Guest NICs are matched by MAC (kvmnet's generated MACs are stable).
- `scope` (shell globs, `--scope`): when given, a managed network missing from
  the spec is removed only if its name matches one of them, so several specs
  (teams, test suites) can share one host; the spec itself must stay inside it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from lxml import etree
from pydantic import BaseModel

from kvmnet.ovn.model import Change
from kvmnet.render.firewall import Fwd
from kvmnet.render.interface_xml import OVN_BRIDGE, interface_element
from kvmnet.render.network_parse import parse_network
from kvmnet.render.network_xml import KVMNET_NS, network_xml
from kvmnet.spec.derive import nic_macs
from kvmnet.spec.model import DhcpHost, Dns, DnsHost, Host, HostBridge, Network, Spec
from kvmnet.state import HostLink, LiveNetwork, LiveState

Impact = Literal["live", "restart", "disruptive", "host"]
_T = TypeVar("_T", bound=BaseModel)

LIBVIRT_BRIDGED = ("nat", "route", "open", "isolated")


@dataclass(frozen=True)
class Update:
    """One virNetworkUpdate call."""

    command: Literal["add-last", "delete", "modify"]
    section: Literal["ip-dhcp-host", "dns-host", "ip-dhcp-range"]
    parent_index: int
    xml: str


@dataclass(frozen=True)
class Action:
    kind: str
    target: str
    impact: Impact
    summary: str
    details: tuple[str, ...] = ()
    xml: str = ""
    updates: tuple[Update, ...] = ()
    autostart: bool | None = None
    restart: bool = False
    domain: str | None = None
    mac: str | None = None
    live: bool = False                       # also change the running guest / network
    managed_macs: tuple[str, ...] | None = None
    needs_allow_destroy: bool = False
    skipped: str | None = None
    host: Host | None = None                # host.bridge: the spec's host section
    ovn: Change | None = None               # ovn.*: one northbound transaction (kvmnet.ovn)
    forwards: tuple[Fwd, ...] = ()          # firewall.sync: every forward the host should hold

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "kind": self.kind, "target": self.target, "impact": self.impact,
            "summary": self.summary, "details": list(self.details),
        }
        if self.needs_allow_destroy:
            d["needs_allow_destroy"] = True
        if self.skipped:
            d["skipped"] = self.skipped
        return d


@dataclass(frozen=True)
class Finding:
    """A plan-time problem about a spec path (the CLI maps it to FILE:LINE:COL)."""

    path: tuple[str | int, ...]
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def changes(self) -> bool:
        return any(a.skipped is None for a in self.actions)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


@dataclass
class _Ctx:
    spec: Spec
    live: LiveState
    adopt: frozenset[str]
    macs: dict[tuple[str, int], str]
    scope: tuple[str, ...] = ()
    actions: list[Action] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def error(self, path: tuple[str | int, ...], msg: str) -> None:
        self.findings.append(Finding(path, msg))

    def warn(self, path: tuple[str | int, ...], msg: str) -> None:
        self.findings.append(Finding(path, msg, "warning"))


def in_scope(name: str, scope: tuple[str, ...]) -> bool:
    return not scope or any(fnmatch.fnmatchcase(name, g) for g in scope)


def make_plan(spec: Spec, live: LiveState, adopt: frozenset[str] = frozenset(),
              scope: tuple[str, ...] = ()) -> Plan:
    ctx = _Ctx(spec, live, adopt, nic_macs(spec), tuple(scope))
    for section, names in (("networks", spec.networks), ("guests", spec.guests)):
        for name in names:
            if not in_scope(name, ctx.scope):
                ctx.error((section, name), f"{name} is outside --scope "
                          f"{' '.join(ctx.scope)}: rename it or widen the scope")
    _host_checks(ctx)
    _host_bridges(ctx)
    for name in spec.networks:
        if spec.networks[name].mode != "overlay":
            _network(ctx, name)
    if spec.ovn is not None:
        _ovn(ctx)
    for gname in spec.guests:
        _guest(ctx, gname)
    _forgotten_guests(ctx)
    _removals(ctx)
    _forwards(ctx)
    return Plan(tuple(ctx.actions), tuple(ctx.findings))


# -- networks ---------------------------------------------------------------

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
    def key(x: _T) -> str:
        return x.model_dump_json()

    return live if sorted(map(key, wanted)) == sorted(map(key, live)) else wanted


def _xml_fields(net: Network) -> Network:
    return net.model_copy(update={"adopt": False, "autostart": True, "forwards": []})


def _network(ctx: _Ctx, name: str) -> None:
    spec_net = ctx.spec.networks[name]
    xml = network_xml(ctx.spec, name, ctx.macs)
    wanted = _xml_fields(parse_network(xml).network)
    ln = ctx.live.networks.get(name)
    target = f"network/{name}"
    if ln is None:
        ctx.actions.append(Action(
            "network.create", target, "live",
            f"define, start and {'autostart' if spec_net.autostart else 'not autostart'} "
            f"{spec_net.mode} network {name}", _describe_new(wanted), xml=xml,
            autostart=spec_net.autostart))
        return
    if not ln.managed:
        if not (spec_net.adopt or name in ctx.adopt):
            ctx.error(("networks", name),
                      f"network {name} already exists on {ctx.live.uri} and is not managed by "
                      f"kvmnet: to let kvmnet take it over, add 'adopt: true' to networks."
                      f"{name} (or pass --adopt {name}); plan then shows the difference; "
                      "or rename the network in the spec")
            return
        restart = ln.active and not ln.split_config
        ctx.actions.append(Action(
            "network.adopt", target, _restart_impact(ctx, name) if restart else "live",
            f"adopt {name}: mark it as managed by kvmnet"
            + (" (this driver shows the mark only after a restart)" if restart
               else " (no restart)"),
            xml=mark_managed(ln.xml), restart=restart))
    live_net = _xml_fields(ln.network)
    wanted = _normalise(wanted, live_net)
    if wanted != live_net:
        _network_change(ctx, name, wanted, live_net, ln, with_uuid(xml, ln.uuid))
    if not ln.active:
        ctx.actions.append(Action("network.start", target, "live", f"start network {name}"))
    if ln.autostart != spec_net.autostart:
        ctx.actions.append(Action(
            "network.autostart", target, "live",
            f"{'enable' if spec_net.autostart else 'disable'} autostart of {name}",
            autostart=spec_net.autostart))


def _strip_live_updatable(net: Network) -> Network:
    ips = {k: getattr(net, k) for k in ("ipv4", "ipv6")}
    upd: dict[str, object] = {k: v.model_copy(update={"hosts": []}) for k, v in ips.items() if v}
    upd["more_ips"] = [c.model_copy(update={"hosts": []}) for c in net.more_ips]
    if net.dns is not None:
        dns = net.dns.model_copy(update={"hosts": []})
        # a <dns> that only holds hosts is no <dns> at all: the first DNS host comes
        # (and the last one goes) live too
        upd["dns"] = None if dns == Dns() else dns
    return net.model_copy(update=upd)


def _network_change(ctx: _Ctx, name: str, wanted: Network, live: Network, ln: LiveNetwork,
                    xml: str) -> None:
    target = f"network/{name}"
    details = tuple(diff_lines(live, wanted))
    hosts = dns = None
    if _strip_live_updatable(wanted) == _strip_live_updatable(live):
        hosts, dns = _host_updates(wanted, live, ln.xml), _dns_updates(wanted, live)
    if hosts is not None and dns is not None:  # (None: libvirt would refuse a live update)
        updates = tuple(hosts) + tuple(dns)
        ctx.actions.append(Action(
            "network.update", target, "live",
            f"update {name} live ({len(updates)} change(s), no restart)", details,
            updates=updates, live=ln.active))
        return
    guests = attached(ctx.live, name, running_only=True)
    impact: Impact = _restart_impact(ctx, name) if ln.active else "live"
    if not ln.active:
        summary = f"redefine {name} (inactive: no restart needed)"
    elif guests:
        summary = (f"redefine and restart {name}: guests {', '.join(guests)} lose network "
                   "for a moment and are reconnected")
    else:
        summary = f"redefine and restart {name} (no running guests attached)"
    ctx.actions.append(Action("network.redefine", target, impact, summary, details, xml=xml,
                              restart=ln.active))


def _restart_impact(ctx: _Ctx, name: str) -> Impact:
    return "disruptive" if attached(ctx.live, name, running_only=True) else "restart"


def mark_managed(xml: str) -> str:
    """The same network XML with kvmnet's ownership mark added."""
    root = etree.fromstring(xml.encode())
    md = root.find("metadata")
    if md is None:
        md = etree.Element("metadata")
        name = root.find("name")
        uuid = root.find("uuid")
        anchor = uuid if uuid is not None else name
        if anchor is not None:
            anchor.addnext(md)
        else:
            root.insert(0, md)
    if md.find(f"{{{KVMNET_NS}}}managed") is None:
        etree.SubElement(md, f"{{{KVMNET_NS}}}managed", nsmap={"kvmnet": KVMNET_NS})
    return etree.tostring(root, encoding="unicode")


def with_uuid(xml: str, uuid: str | None) -> str:
    """Network XML that redefines the existing network (same UUID), not a new one."""
    if not uuid:
        return xml
    root = etree.fromstring(xml.encode())
    old = root.find("uuid")
    if old is not None:
        old.text = uuid
    else:
        el = etree.Element("uuid")
        el.text = uuid
        name = root.find("name")
        if name is not None:
            name.addnext(el)
        else:
            root.insert(0, el)
    return etree.tostring(root, encoding="unicode")


def _ip_index(xml: str) -> dict[str, int]:
    root = etree.fromstring(xml.encode())
    return {str(ipaddress.ip_address(ip.get("address", "0.0.0.0"))): i
            for i, ip in enumerate(root.iterfind("ip")) if ip.get("address")}


def _host_key(h: DhcpHost) -> str:
    return h.mac or h.id or h.name or str(h.ip)


def _host_xml(h: DhcpHost) -> str:
    el = etree.Element("host")
    if h.mac:
        el.set("mac", h.mac)
    if h.id:
        el.set("id", h.id)
    if h.name:
        el.set("name", h.name)
    el.set("ip", str(h.ip))
    if h.lease_time is not None:
        lease = etree.SubElement(el, "lease", expiry=str(h.lease_time.expiry))
        if h.lease_time.expiry:
            lease.set("unit", h.lease_time.unit)
    return etree.tostring(el, encoding="unicode")


def _host_updates(wanted: Network, live: Network, live_xml: str) -> list[Update] | None:
    """Deletes, then modifies, then adds; None when libvirt would refuse one of them: it
    refuses to add a reservation that shares a MAC, id, name or address with one the
    network still holds at that moment (seen with libvirt 9.0), e.g. two reservations
    that swap addresses. The caller then redefines the network instead."""
    index = _ip_index(live_xml)
    out: list[Update] = []
    for w, lv in zip(wanted.all_ips(), live.all_ips(), strict=False):
        if w.hosts == lv.hosts:
            continue
        pi = index.get(str(lv.address.ip), -1)
        wmap = {_host_key(h): h for h in w.hosts}
        lmap = {_host_key(h): h for h in lv.hosts}
        state = {k: h for k, h in lmap.items() if k in wmap}
        out += [Update("delete", "ip-dhcp-host", pi, _host_xml(h))
                for k, h in lmap.items() if k not in wmap]
        for k, h in wmap.items():
            if k in lmap and lmap[k] != h:
                out.append(Update("modify", "ip-dhcp-host", pi, _host_xml(h)))
                state[k] = h
        for k, h in wmap.items():
            if k not in lmap:
                if any(_dhcp_clash(h, o) for o in state.values()):
                    return None
                out.append(Update("add-last", "ip-dhcp-host", pi, _host_xml(h)))
                state[k] = h
    return out


def _dhcp_clash(a: DhcpHost, b: DhcpHost) -> bool:
    return a.ip == b.ip or any(x is not None and x == y for x, y in (
        (a.mac, b.mac), (a.id, b.id), (a.name, b.name)))


def _dns_xml(h: DnsHost) -> str:
    el = etree.Element("host", ip=str(h.ip))
    for n in h.names:
        etree.SubElement(el, "hostname").text = n
    return etree.tostring(el, encoding="unicode")


def _dns_updates(wanted: Network, live: Network) -> list[Update] | None:
    """None when libvirt would refuse: it deletes the one DNS host that shares the
    address or a name with the one given ("multiple matching DNS HOST records" when
    several do, e.g. one name on two addresses) and adds none whose address is taken."""
    w = list(wanted.dns.hosts) if wanted.dns else []
    lv = list(live.dns.hosts) if live.dns else []
    # libvirt 9.0 cannot modify a DNS host: a changed one is deleted and added.
    state = list(lv)
    out: list[Update] = []
    for h in [h for h in lv if h not in w]:
        if sum(1 for o in state if o.ip == h.ip or set(o.names) & set(h.names)) != 1:
            return None
        state.remove(h)
        out.append(Update("delete", "dns-host", -1, _dns_xml(h)))
    for h in [h for h in w if h not in lv]:
        if any(o.ip == h.ip for o in state):
            return None
        state.append(h)
        out.append(Update("add-last", "dns-host", -1, _dns_xml(h)))
    return out


def _describe_new(net: Network) -> tuple[str, ...]:
    lines = [f"+ mode: {net.mode}"]
    if net.bridge:
        lines.append(f"+ bridge: {net.bridge}")
    for c in net.all_ips():
        lines.append(f"+ address: {c.address}")
        lines += [f"+ dhcp: {r}" for r in c.dhcp]
        lines += [f"+ reservation: {h.ip} {h.mac or h.id or ''} {h.name or ''}".rstrip()
                  for h in c.hosts]
    return tuple(lines)


def diff_lines(old: Network, new: Network) -> list[str]:
    """Human diff of two networks: '- key: old' / '+ key: new' per changed leaf."""
    a = _flatten(old.model_dump(mode="json"))
    b = _flatten(new.model_dump(mode="json"))
    out: list[str] = []
    for k in sorted(set(a) | set(b)):
        if k.endswith("xml_prefix"):  # how XML spells a prefix, not a change of its own
            continue
        if a.get(k) != b.get(k):
            if k in a:
                out.append(f"- {k}: {a[k]}")
            if k in b:
                out.append(f"+ {k}: {b[k]}")
    return out


def _flatten(v: object, prefix: str = "") -> dict[str, object]:
    if isinstance(v, dict):
        out: dict[str, object] = {}
        for k, x in v.items():
            out.update(_flatten(x, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(v, list):
        if all(not isinstance(x, dict | list) for x in v):
            return {prefix: v} if v else {}
        out = {}
        for i, x in enumerate(v):
            out.update(_flatten(x, f"{prefix}[{i}]"))
        return out
    if v is None or v == [] or v == {}:
        return {}
    return {prefix: v}


def _removals(ctx: _Ctx) -> None:
    for name, ln in sorted(ctx.live.networks.items()):
        if name in ctx.spec.networks or not ln.managed or not in_scope(name, ctx.scope):
            continue
        guests = attached(ctx.live, name)
        running = attached(ctx.live, name, running_only=True)
        summary = f"stop and undefine network {name}"
        if guests:
            summary += f" (guests attached: {', '.join(guests)})"
        ctx.actions.append(Action(
            "network.remove", f"network/{name}", "disruptive" if running else "live", summary,
            needs_allow_destroy=bool(guests), restart=ln.active))


# -- port forwards: one firewall.sync after the networks (kvmnet.forwards) -----

def _forwards(ctx: _Ctx) -> None:
    from kvmnet.forwards import plan_forwards

    p = plan_forwards(ctx.spec, ctx.live.firewall, lambda n: not in_scope(n, ctx.scope),
                      ctx.live.is_test)
    if p is None:
        return
    for path, msg in p.errors:
        ctx.error(path, msg)
    if not p.errors:
        ctx.actions.append(Action("firewall.sync", "firewall/forwards", "live", p.summary,
                                  p.details, skipped=p.skipped, forwards=p.forwards))


# -- OVN: overlay networks live in the northbound database (kvmnet.ovn) -------

def _ovn(ctx: _Ctx) -> None:
    from kvmnet.ovn.diff import plan_nb

    if ctx.live.ovn is None:
        ctx.error(("ovn",), "the OVN northbound database was not read")
        return
    p = plan_nb(ctx.spec, ctx.live.ovn, ctx.adopt, lambda n: in_scope(n, ctx.scope))
    ctx.findings += [Finding(f.path, f.message, f.severity) for f in p.findings]
    ctx.actions += [Action(f"ovn.{c.op}", c.target, c.impact, c.summary, c.details,
                           needs_allow_destroy=c.needs_allow_destroy, skipped=c.skipped, ovn=c)
                    for c in p.changes]


# -- guests -----------------------------------------------------------------

def _forgotten_guests(ctx: _Ctx) -> None:
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


def _guest(ctx: _Ctx, gname: str) -> None:
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
        xml = etree.tostring(el, encoding="unicode")
        src = nic.network or nic.bridge
        kind = "network" if nic.network else "bridge"
        if nic.network and el.get("type") == "bridge":  # overlay: a port of br-int (kvmnet.ovn)
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
        changes = []
        if cur.type != kind or cur.source != src:
            changes.append(f"~ source: {cur.type} {cur.source} -> {kind} {src}")
        if nic.model and cur.model != nic.model:
            changes.append(f"~ model: {cur.model} -> {nic.model} (at the guest's next boot)")
        if nic.portgroup and cur.portgroup != nic.portgroup:
            changes.append(f"~ portgroup: {cur.portgroup} -> {nic.portgroup}")
        if nic.mtu and cur.mtu != nic.mtu:
            changes.append(f"~ mtu: {cur.mtu} -> {nic.mtu}")
        if changes:
            only_model = all(c.startswith("~ model") for c in changes)
            ctx.actions.append(Action(
                "nic.update", target, "disruptive" if dom.running and not only_model else "live",
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


# -- the host ---------------------------------------------------------------

def _host_bridges(ctx: _Ctx) -> None:
    """A bridge that is missing, a port not in it yet, addresses still on a port or
    missing on the bridge -> one host.bridge action: apply moves the ports in live
    (their addresses and routes follow) and rolls back unless confirmed."""
    for br, hb in ctx.spec.host.bridges.items():
        if ctx.live.is_test:
            ctx.actions.append(Action(
                "host.bridge", f"host/{br}", "host",
                f"create host bridge {br} with ports {', '.join(hb.ports) or '(none)'}",
                skipped="test:/// connection: the real host is not changed"))
            continue
        if not ctx.live.host.readable:
            continue
        details = _bridge_diff(ctx, br, hb)
        if details:
            ctx.actions.append(Action(
                "host.bridge", f"host/{br}", "host",
                f"move {', '.join(hb.ports) or '(no ports)'} into host bridge {br} live "
                "(addresses and routes follow; rolled back unless confirmed)",
                tuple(details), host=ctx.spec.host))


def _bridge_diff(ctx: _Ctx, br: str, hb: HostBridge) -> list[str]:
    host = ctx.live.host
    path: tuple[str | int, ...] = ("host", "bridges", br)
    link = host.links.get(br)
    out: list[str] = []
    if link is None:
        delay = f", forward delay {hb.forward_delay} s" if hb.forward_delay is not None else ""
        out.append(f"+ bridge {br}: stp {'on' if hb.stp else 'off'}{delay}")
    elif link.kind != "bridge":
        ctx.error(path, f"{br} exists on the host as a {link.kind or 'ethernet'} link, not "
                  "a bridge: pick another bridge name")
        return []
    moved: list[str] = []
    for i, port in enumerate(hb.ports):
        pl = host.links.get(port)
        problem = _port_problem(port, pl, br)
        if pl is None or problem:
            ctx.error((*path, "ports", i), problem or f"{port} is missing")
            continue
        if pl.master != br:
            out.append(f"~ {port}: enslave to {br}")
        _session_guard(ctx, (*path, "ports", i), port, pl, hb)
        for a in pl.addresses:
            if not _v6_link_local(a):  # the kernel makes those per link
                out.append(f"~ address {a}: {port} -> {br}")
                moved.append(a)
        out += [f"~ route {r.dst} via {r.gateway}"
                + (f" metric {r.metric}" if r.metric is not None else "") + f": {port} -> {br}"
                for r in host.routes if r.dev == port and r.gateway]
    have = {ipaddress.ip_interface(a) for a in [*(link.addresses if link else ()), *moved]}
    out += [f"+ address {a} on {br}" for a in hb.address if a not in have]
    for a in moved:
        if ipaddress.ip_interface(a) not in hb.address and not hb.dhcp:
            ctx.warn((*path, "address"), f"{a} moves to {br} live but is not in the spec, "
                     f"so it is gone after a reboot: add it to host.bridges.{br}.address")
    return out


def _session_guard(ctx: _Ctx, path: tuple[str | int, ...], port: str, link: HostLink,
                   hb: HostBridge) -> None:
    """Refuse to move the address this SSH session uses when the spec gives no gateway:
    the default route would not come back on the bridge after a reboot."""
    sess = ctx.live.host.session_addr
    if not sess or hb.gateway is not None or hb.dhcp:
        return
    if any(str(ipaddress.ip_interface(a).ip) == sess for a in link.addresses):
        gws = sorted({r.gateway for r in ctx.live.host.routes
                      if r.dev == port and r.gateway and r.net.prefixlen == 0})
        hint = f"gateway: {gws[0]}" if gws else "gateway: <your LAN router>"
        ctx.error(path, f"this SSH session came in on {sess}, which is on {port}, and the "
                  f"spec gives {ctx_bridge(path)} no gateway: the host could lose this "
                  f"session after a reboot. Add {hint} (and keep address:), or run "
                  "from the console")


def ctx_bridge(path: tuple[str | int, ...]) -> str:
    return str(path[2]) if len(path) > 2 else "the bridge"


def _v6_link_local(cidr: str) -> bool:
    a = ipaddress.ip_interface(cidr)
    return a.version == 6 and a.is_link_local


def _port_problem(port: str, link: HostLink | None, bridge: str) -> str | None:
    if link is None:
        return f"{port} does not exist on the host: name an existing NIC"
    if link.wireless:
        return (f"{port} is a wireless interface: bridging Wi-Fi does not work (the access "
                "point drops frames with the guests' MACs); use a routed (mode: route) or "
                "NAT network instead")
    if link.master not in (None, bridge):
        return (f"{port} is already a port of {link.master}: take it out first, or use "
                f"{link.master} as the bridge")
    return None


def host_needed(spec: Spec, live: LiveState) -> bool:
    """Does plan look at the host's links and routes? For host bridges, and for the
    networks libvirt does not have yet (their bridges and subnets must not collide
    with the host's, _host_checks); not when every network exists (a no-op)."""
    return bool(spec.host.bridges) or any(
        name not in live.networks for name, net in spec.networks.items()
        if net.mode != "overlay")


def _host_checks(ctx: _Ctx) -> None:
    host = ctx.live.host
    lv_bridges = {ln.bridge for ln in ctx.live.networks.values() if ln.bridge}
    if host.readable:
        ours = lv_bridges | set(ctx.spec.host.bridges)
        for name, net in ctx.spec.networks.items():
            if name in ctx.live.networks or net.mode == "overlay":  # overlay: not on this host
                continue
            if net.mode in LIBVIRT_BRIDGED and net.bridge and net.bridge in host.links \
                    and net.bridge not in lv_bridges:
                ctx.error(("networks", name, "bridge"), f"{net.bridge} already exists on the "
                          "host and is not a libvirt network's bridge: pick another name")
            if net.mode == "bridge" and net.bridge and net.bridge not in host.links \
                    and net.bridge not in ctx.spec.host.bridges:
                ctx.error(("networks", name, "bridge"), f"host bridge {net.bridge} does not "
                          "exist: create it, or add it under host.bridges")
            for key, ipc in (("ipv4", net.ipv4), ("ipv6", net.ipv6)):
                if ipc is None:
                    continue
                sub = ipc.address.network
                for r in host.routes:
                    if r.dev in ours or r.net.prefixlen == 0 or r.net.version != sub.version:
                        continue
                    if r.net.overlaps(sub):
                        ctx.error(("networks", name, key, "address"), f"{sub} overlaps the "
                                  f"host route {r.dst} on {r.dev}: pick a subnet the host does "
                                  "not use")
                        break
    by_mac: dict[str, str] = {}
    for d in ctx.live.domains.values():
        for n in d.nics:
            by_mac.setdefault(n.mac, d.name)
    for (gname, i), mac in ctx.macs.items():
        owner = by_mac.get(mac)
        if owner is not None and owner != gname:
            ctx.error(("guests", gname, "interfaces", i), f"MAC {mac} is already used by "
                      f"domain {owner} on {ctx.live.uri}: pick another (kvmnet mac --spec FILE)")


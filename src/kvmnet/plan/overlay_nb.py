"""plan_nb: (wanted Spec, live NbState) -> northbound Changes. Pure.

How the two sides are compared (the ignore rules):
- Switches are matched by name, DHCP_Options by their kvmnet:network mark, ports
  by name (overlay_port_id: the network, guest and NIC index are in it).
- Only what kvmnet writes is compared: the kvmnet:* keys of external_ids, the
  SWITCH_KEYS of a switch's other_config, a DHCP row's cidr and whole options
  map (kvmnet owns the row), a port's addresses, port_security and DHCPv4
  options. Keys others add to those maps are kept; what northd fills in
  (dynamic_addresses, up) is never a change.
- A row without kvmnet's mark is never written. A switch of a spec network
  that exists unmarked is an error unless the network is adopted (`adopt:` or
  --adopt), which marks it; an unmarked port on a kvmnet switch is left alone,
  and keeps that switch from being removed.
- Marked rows whose network (or guest NIC) left the spec are removed, when the
  network matches the --scope globs. Order: switches, DHCP, ports created or
  changed first; then ports, DHCP, switches removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kvmnet.model.overlay import (
    GUEST_KEY,
    NETWORK_KEY,
    NIC_KEY,
    OWNER_KEY,
    OWNER_VALUE,
    SWITCH_KEYS,
    Change,
    Dhcp,
    NbFinding,
    NbPlan,
    NbState,
    Op,
    Port,
    Router,
    Switch,
    Table,
    ours,
)
from kvmnet.model.spec import Ovn, Spec
from kvmnet.plan.ovn_fields import map_changes, ovn_change
from kvmnet.render.overlay import wanted_nb


def _all(_name: str) -> bool:
    return True


def plan_nb(spec: Spec, live: NbState, adopt: frozenset[str] = frozenset(),
            in_scope: Callable[[str], bool] = _all,
            macs: dict[tuple[str, int], str] | None = None) -> NbPlan:
    assert spec.ovn is not None
    want = wanted_nb(spec, macs)
    p = _Planner(spec.ovn, want, live, in_scope)
    for name, sw in want.switches.items():
        net = sw.external_ids[NETWORK_KEY]
        p.switch(sw, name == net and (spec.networks[net].adopt or net in adopt))
    for name, d in want.dhcp.items():
        if name not in p.blocked:
            p.dhcp(d)
    for port in want.ports.values():
        if port.external_ids.get(NETWORK_KEY) not in p.blocked:
            p.port(port)
    for name, r in want.routers.items():
        if name not in p.blocked:
            p.router(r)
    p.removals()
    return NbPlan(tuple(p.changes + p.removed), tuple(p.findings))


def _map_diff(label: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Plan lines of a map column's keys that differ (plan.ovn_fields names them)."""
    return [c.line for c in map_changes(label, old, new)]


def _set(field: str, value: object) -> str:
    return ovn_change(field, None, value).line


def _port_label(p: Port) -> str:
    ids = p.external_ids
    if GUEST_KEY in ids and NIC_KEY in ids:
        return f"{ids.get(NETWORK_KEY, p.switch)}/{ids[GUEST_KEY]}/{ids[NIC_KEY]}"
    return p.name


def _bound(p: Port) -> bool:
    """A guest's port that an ovn-controller has bound (northd also marks router
    ports up: those are not guests)."""
    return p.up and p.type == ""


def _router_lines(r: Router) -> list[str]:
    out = []
    for p in r.ports:
        gw = ", ".join(f"{c}:{n}" for c, n in p.gateway_chassis)
        out.append(f"port {p.name}: {p.mac} {' '.join(p.networks)}"
                   + (f" (gateway chassis {gw})" if gw else ""))
    out += [f"route {a} via {b}" for a, b in r.routes]
    out += [f"nat {t} {lip} -> {eip}" for t, eip, lip in r.nat]
    return out


class _Planner:
    def __init__(self, nb: Ovn, want: NbState, live: NbState,
                 in_scope: Callable[[str], bool]) -> None:
        self.nb, self.want, self.live, self.in_scope = nb, want, live, in_scope
        self.changes: list[Change] = []
        self.removed: list[Change] = []
        self.findings: list[NbFinding] = []
        self.blocked: set[str] = set()          # networks whose switch we may not touch

    def _change(self, op: Op, table: Table, key: str, label: str, summary: str,
                **kw: Any) -> Change:
        return Change(op, table, key, f"ovn/{table}/{label}", summary, self.nb, **kw)

    # -- switches -------------------------------------------------------------
    def switch(self, sw: Switch, adopt: bool) -> None:
        cur = self.live.switches.get(sw.name)
        if cur is None:
            self.changes.append(self._change(
                "create", "switch", sw.name, sw.name,
                f"create logical switch {sw.name}"
                + (f" ({sw.other_config['subnet']})" if "subnet" in sw.other_config else
                   f" (outside of {sw.external_ids.get(NETWORK_KEY)}'s router)"),
                columns={"name": sw.name, "other_config": dict(sw.other_config),
                         "external_ids": dict(sw.external_ids)},
                details=tuple(_set(f"other_config:{k}", v) for k, v in sw.other_config.items())))
            return
        if not cur.owned and not adopt:
            self.blocked.add(sw.external_ids.get(NETWORK_KEY, sw.name))
            self.findings.append(NbFinding(("networks", sw.name), (
                f"logical switch {sw.name} already exists in OVN northbound "
                f"({self.nb.northbound}) and is not managed by kvmnet: to let kvmnet take it "
                f"over, add 'adopt: true' to networks.{sw.name} (or pass --adopt {sw.name}); "
                "or rename the network in the spec")))
            return
        old_cfg = {k: v for k, v in cur.other_config.items() if k in SWITCH_KEYS}
        details = _map_diff("other_config", old_cfg, sw.other_config)
        details += _map_diff("external_ids", ours(cur.external_ids), sw.external_ids)
        if not details:
            return
        gone = tuple(k for k in old_cfg if k not in sw.other_config)
        self.changes.append(self._change(
            "update" if cur.owned else "adopt", "switch", sw.name, sw.name,
            (f"update logical switch {sw.name}" if cur.owned else
             f"adopt logical switch {sw.name}: mark it as managed by kvmnet"),
            columns={"other_config": dict(sw.other_config),
                     "external_ids": dict(sw.external_ids)},
            remove_keys={"other_config": gone} if gone else {}, uuid=cur.uuid,
            details=tuple(details)))

    # -- DHCP -------------------------------------------------------------------
    def dhcp(self, d: Dhcp) -> None:
        cur = self.live.dhcp.get(d.network)
        cols: dict[str, object] = {"cidr": d.cidr, "options": dict(d.options),
                                   "external_ids": dict(d.external_ids)}
        if cur is None:
            self.changes.append(self._change(
                "create", "dhcp", d.network, d.network,
                f"create DHCP options for {d.network} ({d.cidr}, server {d.options['server_id']})",
                columns=cols,
                details=tuple(_set(f"options:{k}", v) for k, v in d.options.items())))
            return
        details = [ovn_change("cidr", cur.cidr, d.cidr).line] if cur.cidr != d.cidr else []
        details += _map_diff("options", cur.options, d.options)
        details += _map_diff("external_ids", ours(cur.external_ids), d.external_ids)
        if details:
            gone = tuple(k for k in cur.options if k not in d.options)
            self.changes.append(self._change(
                "update", "dhcp", d.network, d.network, f"update DHCP options of {d.network}",
                columns=cols, remove_keys={"options": gone} if gone else {}, uuid=cur.uuid,
                details=tuple(details)))

    # -- ports --------------------------------------------------------------------
    def port(self, p: Port) -> None:
        cur = self.live.ports.get(p.name)
        label = _port_label(p)
        cols: dict[str, object] = {"addresses": list(p.addresses),
                                   "port_security": list(p.port_security),
                                   "external_ids": dict(p.external_ids),
                                   "type": p.type, "options": dict(p.options)}
        if cur is None:
            self.changes.append(self._change(
                "create", "port", p.name, label,
                f"create logical port {p.name} ({label}) on {p.switch}: "
                f"{p.type + ' ' if p.type else ''}{p.addresses[0]}",
                columns={"name": p.name, **cols}, switch=p.switch, dhcp_network=p.dhcpv4,
                details=(_set("addresses", p.addresses[0]),
                         _set("port_security", " ".join(p.port_security)))))
            return
        if not cur.owned:
            ids = p.external_ids
            self.findings.append(NbFinding(
                ("guests", ids[GUEST_KEY], "interfaces", int(ids[NIC_KEY])) if GUEST_KEY in ids
                else ("networks", ids[NETWORK_KEY], "router"),
                f"logical port {p.name} already exists in OVN northbound and is not managed by "
                "kvmnet: remove it there, or let kvmnet own it by adding its mark "
                f"(external_ids:{OWNER_KEY}={OWNER_VALUE})"))
            return
        if cur.switch != p.switch:  # cannot happen with kvmnet's names, but be safe
            self.removed.append(self._remove_port(cur))
            self.changes.append(self._change(
                "create", "port", p.name, label, f"create logical port {p.name} on {p.switch}",
                columns={"name": p.name, **cols}, switch=p.switch, dhcp_network=p.dhcpv4))
            return
        details = []
        for col in ("addresses", "port_security"):
            a, b = getattr(cur, col), getattr(p, col)
            if a != b:
                details.append(ovn_change(col, " ".join(a) or None, " ".join(b) or None).line)
        if cur.dhcpv4 != p.dhcpv4:
            details.append(ovn_change("dhcpv4_options", cur.dhcpv4, p.dhcpv4).line)
        if cur.type != p.type:
            details.append(ovn_change("type", cur.type or None, p.type or None).line)
        details += _map_diff("options", cur.options, p.options)
        details += _map_diff("external_ids", ours(cur.external_ids), p.external_ids)
        if details:
            moved = cur.addresses != p.addresses
            self.changes.append(self._change(
                "update", "port", p.name, label, f"update logical port {p.name} ({label})",
                columns=cols, uuid=cur.uuid, dhcp_network=p.dhcpv4, details=tuple(details),
                impact="disruptive" if _bound(cur) and moved else "live"))

    def _remove_port(self, cur: Port) -> Change:
        label = _port_label(cur)
        return self._change(
            "remove", "port", cur.name, label,
            f"delete logical port {cur.name} ({label})"
            + (": bound to a running guest, which loses the network" if _bound(cur) else ""),
            uuid=cur.uuid, impact="disruptive" if _bound(cur) else "live")

    # -- routers ----------------------------------------------------------------------
    def router(self, r: Router) -> None:
        cur = self.live.routers.get(r.name)
        if cur is not None and not cur.owned:
            self.findings.append(NbFinding(("networks", r.name, "router"), (
                f"logical router {r.name} already exists in OVN northbound and is not managed "
                "by kvmnet: rename the network, or remove that router")))
            return
        new = _router_lines(r)
        if cur is None:
            self.changes.append(self._change(
                "create", "router", r.name, r.name, f"create logical router {r.name}",
                router=r, details=tuple(f"+ {x}" for x in new)))
            return
        old = _router_lines(cur)
        details = [f"- {x}" for x in old if x not in new] + [f"+ {x}" for x in new
                                                             if x not in old]
        details += _map_diff("external_ids", ours(cur.external_ids), r.external_ids)
        if details:
            self.changes.append(self._change(
                "update", "router", r.name, r.name,
                f"rebuild logical router {r.name} (one transaction)", router=r,
                uuid=cur.uuid, details=tuple(details)))

    # -- removals -------------------------------------------------------------------
    def removals(self) -> None:
        for name, r in sorted(self.live.routers.items()):
            if r.owned and name not in self.want.routers and self.in_scope(
                    r.external_ids.get(NETWORK_KEY, name)):
                self.removed.append(self._change(
                    "remove", "router", name, name, f"delete logical router {name}",
                    uuid=r.uuid))
        for name, cur in sorted(self.live.ports.items()):
            net = cur.external_ids.get(NETWORK_KEY, cur.switch)
            if cur.owned and name not in self.want.ports and self.in_scope(net):
                self.removed.append(self._remove_port(cur))
        for net, d in sorted(self.live.dhcp.items()):
            if net not in self.want.dhcp and self.in_scope(net):
                self.removed.append(self._change(
                    "remove", "dhcp", net, net, f"delete DHCP options of {net} ({d.cidr})",
                    uuid=d.uuid))
        for dup in self.live.duplicates:
            table: Table = "switch" if isinstance(dup, Switch) else "dhcp"
            key = dup.name if isinstance(dup, Switch) else dup.network
            self.removed.append(self._change(
                "remove", table, key, key, f"delete duplicate {table} row of {key} "
                f"({dup.uuid})", uuid=dup.uuid))
        for name, sw in sorted(self.live.switches.items()):
            if not sw.owned or name in self.want.switches or not self.in_scope(
                    sw.external_ids.get(NETWORK_KEY, name)):
                continue
            foreign = [p for p in sw.ports if p not in self.live.ports
                       or not self.live.ports[p].owned]
            up = [p for p in sw.ports if p in self.live.ports and _bound(self.live.ports[p])]
            self.removed.append(self._change(
                "remove", "switch", name, name, f"delete logical switch {name}"
                + (f" ({len(up)} port(s) bound to running guests)" if up else ""),
                uuid=sw.uuid, needs_allow_destroy=bool(up) and not foreign,
                impact="disruptive" if up else "live",
                skipped=(f"it has ports kvmnet does not own ({', '.join(foreign)}): "
                         "remove them first" if foreign else None)))

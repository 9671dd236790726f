"""What the read-only commands show, as plain data: `show`, `leases`, `plan` and `doctor`
--json, and the live topology `graph -c URI` draws. The CLI prints these; `kvmnet serve`
(kvmnet.web) puts the very same dicts on its pages and under /api/, so the two never
differ. Pure functions of what was read; no printing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kvmnet.doctor.checks import Check
    from kvmnet.errors import Problem
    from kvmnet.model.live import LiveState
    from kvmnet.model.spec import Spec
    from kvmnet.plan import Plan
    from kvmnet.render.graph import Facts, Graph
    from kvmnet.service.multihost import Outcome, Session, Summary


def show_data(live: LiveState, leases: list[dict[str, Any]]) -> dict[str, Any]:
    """`kvmnet show --json`: networks, guests' NICs (addresses and their sources, the
    guest firewall sets each uses), and the port forwards kvmnet installed."""
    from kvmnet.backend.neigh import addresses_by_mac
    from kvmnet.plan.forwards import show_rows

    addrs = addresses_by_mac(leases)
    nets = [{"name": n.name, "mode": n.network.mode, "bridge": n.bridge,
             "subnets": [str(c.address) for c in n.network.all_ips()], "active": n.active,
             "autostart": n.autostart, "managed": n.managed,
             "owner": (n.owner or "kvmnet") if n.managed else "unmanaged",
             **({"unreadable": n.problem} if n.problem else {})}
            for n in sorted(live.networks.values(), key=lambda n: n.name)]
    from kvmnet.parse.nwfilter import nic_sets

    mine = {f.name: f.xml for f in (live.nwfilters or {}).values() if f.owned}
    vl = nic_vlans(live)
    nics = [{"guest": d.name, "running": d.running, "mac": nic.mac, "type": nic.type,
             "source": nic.source, "model": nic.model,
             "ip": (addrs.get(nic.mac) or [{"ip": None}])[0]["ip"],
             "addresses": addrs.get(nic.mac, []), "filter": nic.filterref,
             "firewalls": nic_sets(nic.filterref, mine)[0],
             "antispoof": nic_sets(nic.filterref, mine)[1],
             "vlans": vl[nic.mac][0] if nic.mac in vl else None}
            for d in live.domains.values() for nic in d.nics]
    return {"kvmnet": 1, "uri": live.uri, "networks": nets, "interfaces": nics,
            "forwards": show_rows(live.firewall)}


def leases_data(uri: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`kvmnet leases --json`."""
    return {"kvmnet": 1, "uri": uri, "leases": rows}


def plan_data(plan: Plan, uri: str, file: str, warnings: Sequence[Problem]) -> dict[str, Any]:
    """`plan --json` of one host (and each host's part of a spec with hosts:)."""
    return {"kvmnet": 1, "uri": uri, "file": file, "owner": plan.owner,
            "changes": plan.changes, "counts": plan.counts(),
            "actions": [a.as_dict() for a in plan.actions],
            "left_alone": [x.as_dict() for x in plan.left_alone],
            "warnings": [w.as_dict() for w in warnings]}


def doctor_data(uri: str, netns: str | None, checks: Iterable[Check]) -> dict[str, Any]:
    """`kvmnet doctor --json`."""
    rows = [c.as_dict() for c in checks]
    return {"kvmnet": 1, "uri": uri, "netns": netns,
            "ok": not any(c["status"] == "fail" for c in rows), "checks": rows}


def network_details(live: LiveState) -> dict[str, dict[str, Any]]:
    """What the networks view adds to show's columns, per network: DHCP ranges and
    reservations, DNS (domain, host names, forwarders), MTU."""
    out: dict[str, dict[str, Any]] = {}
    for name, ln in live.networks.items():
        net = ln.network
        ips = net.all_ips()
        dns = net.dns
        out[name] = {
            "dhcp": [f"{r.start}-{r.end}" for c in ips for r in c.dhcp],
            "reservations": [{"ip": str(h.ip), "mac": h.mac, "name": h.name}
                             for c in ips for h in c.hosts],
            "domain": net.domain,
            "dns_hosts": [{"ip": str(h.ip), "names": list(h.names)}
                          for h in (dns.hosts if dns else ())],
            "mtu": net.mtu,
        }
    return out


def nic_vlans(live: LiveState) -> dict[str, list[str]]:
    """MAC -> the VLANs of that NIC (guests' NICs view): libvirt's `<vlan>`, or the ones
    kvmnet sets on its tap (its record, where libvirt cannot)."""
    out: dict[str, list[str]] = {}
    for d in live.domains.values():
        for nic in d.nics:
            rec = d.record(nic.mac)
            v = nic.vlans or (rec.vlans if rec is not None else None)
            if v is not None:
                out[nic.mac] = [v.text()]
    return out


# -- the topology of what is live -------------------------------------------------

def live_topology(live: LiveState, rows: Sequence[dict[str, Any]]) -> tuple[Spec, Facts]:
    """The live state as a Spec (kvmnet import), with the host's bridges, the default
    route and the guests' addresses (leases, agent, neighbours: `rows`) as facts."""
    from kvmnet.model.spec import Host
    from kvmnet.render.graph import Facts, default_route, live_host_bridges, live_host_links
    from kvmnet.service.ops import import_spec

    spec, _notes = import_spec(live)
    addrs: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        addrs.setdefault(r["mac"], []).append((r["ip"], r["source"]))
    dev = gw = None
    addrs_on_dev: tuple[str, ...] = ()
    if live.host.readable:
        own = {ln.bridge for ln in live.networks.values()
               if ln.bridge and ln.network.mode != "bridge"}
        bridges = live_host_bridges(live.host, own)
        bonds, vlans = live_host_links(live.host, bridges)
        spec = spec.model_copy(update={"host": Host(bridges=bridges, bonds=bonds,
                                                    vlans=vlans)})
        dev, gw = default_route(live.host) or (None, None)
        link = live.host.links.get(dev) if dev else None
        addrs_on_dev = link.addresses if link else ()
    return spec, Facts(addresses=addrs, default_dev=dev, default_gw=gw,
                       default_addresses=addrs_on_dev)


def live_graph(live: LiveState, rows: Sequence[dict[str, Any]], title: str = "") -> Graph:
    from kvmnet.render.graph import build_graph

    spec, facts = live_topology(live, rows)
    return build_graph(spec, facts, title or live.uri)


# -- a spec with hosts: -------------------------------------------------------------

def outcome_data(o: Outcome, file: str, applied: bool = False) -> dict[str, Any]:
    """One host's (or OVN northbound's) part of `plan --json` / `apply --json`."""
    from kvmnet.service.multihost import status

    p = o.planned
    d: dict[str, Any] = (plan_data(p.plan, p.live.uri, file, p.warnings) if p is not None
                         else {"kvmnet": 1, "uri": o.target.uri, "file": file,
                               "changes": False, "actions": [], "warnings": []})
    d["uri"] = o.target.uri
    d["status"] = status(o)
    d["error"] = o.error
    d["problems"] = [x.as_dict() for x in o.problems]
    d["seconds"] = round(o.plan_s + o.apply_s, 3)
    if applied:
        r = o.report
        d["ok"] = not o.failed
        d["writes"] = r.writes if r is not None else 0
        d["results"] = [x.as_dict() for x in r.results] if r is not None else []
    return d


def hosts_plan_data(s: Session, summary: Summary, file: str, warnings: Sequence[Problem],
                    applied: bool = False) -> dict[str, Any]:
    """`plan --json` (`apply --json`) of a spec with hosts:."""
    ovn = s.ovn
    return {"kvmnet": 1, "file": file, "warnings": [w.as_dict() for w in warnings],
            "hosts": {o.target.name: outcome_data(o, file, applied) for o in s.hosts},
            "ovn": None if ovn is None else outcome_data(ovn, file, applied),
            "summary": summary.as_dict()}

"""The topology picture: Spec (+ what only the live host knows) -> Graph (DOT and
Mermaid text: render.graph_text).

Left to right, the way traffic comes in: the outside (LAN router, uplink, the
route the router needs for routed networks), the host (NICs, bridges), the
libvirt networks grouped by mode, then the guests, one row per NIC (MAC and
addresses). Port forwards sit between the host and the guest they reach.
Pure: the CLI runs Graphviz's `dot` for .svg/.png.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kvmnet.model.derive import nic_macs
from kvmnet.model.hostlink import BOND_MODES
from kvmnet.model.live import HostState
from kvmnet.model.spec import (
    DhcpRange,
    HostBond,
    HostBridge,
    HostVlan,
    Network,
    PortForward,
    Spec,
)
from kvmnet.render.routes import PLACEHOLDER, upstream_routes

Kind = Literal["router", "nic", "bridge", "network", "guest", "forward", "note"]
Style = Literal["solid", "dashed", "invis"]

# cluster id -> title, in drawing order; networks go to "net-<mode>"
CLUSTERS: dict[str, str] = {
    "outside": "outside", "host": "host",
    "net-nat": "NAT networks", "forwards": "port forwards", "net-route": "routed networks",
    "net-open": "open networks",
    "net-isolated": "isolated networks", "net-bridge": "bridged networks (host bridge)",
    "net-macvtap": "macvtap networks (direct)", "net-overlay": "overlay networks",
    "guests": "guests",
}
COMPACT_AT = 12


@dataclass(frozen=True)
class Node:
    id: str
    kind: Kind
    title: str
    lines: tuple[str, ...] = ()
    cluster: str = "host"
    sub: str = ""                                # a network's mode (colour), a guest's NICs
    rows: tuple[tuple[str, str], ...] = ()       # guest NICs: (port id, text)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str = ""
    dst_port: str = ""
    style: Style = "solid"


@dataclass(frozen=True)
class Graph:
    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def clusters(self) -> list[tuple[str, str, list[Node]]]:
        by: dict[str, list[Node]] = {}
        for n in self.nodes:
            by.setdefault(n.cluster, []).append(n)
        return [(c, t, by[c]) for c, t in CLUSTERS.items() if c in by]


@dataclass(frozen=True)
class Facts:
    """What only the live host knows: guests' addresses (MAC -> [(address, source)]) and
    where the default route goes."""

    addresses: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    default_dev: str | None = None
    default_gw: str | None = None
    default_addresses: tuple[str, ...] = ()   # CIDRs on default_dev


# -- live host -> spec-shaped facts ------------------------------------------------

def live_host_bridges(host: HostState, skip: Iterable[str] = ()) -> dict[str, HostBridge]:
    """The host's bridges as `host.bridges` of a Spec: ports (guest taps left out),
    addresses, the default gateway if the default route leaves through the bridge.
    `skip`: bridges libvirt made for its own networks (they are drawn as networks)."""
    gw = default_route(host)
    out: dict[str, HostBridge] = {}
    skipped = set(skip)
    for name, link in sorted(host.links.items()):
        if link.kind != "bridge" or name in skipped:
            continue
        ports = [p.name for p in sorted(host.links.values(), key=lambda x: x.name)
                 if p.master == name and p.kind != "tun"]
        gateway = gw[1] if gw and gw[0] == name else None
        addrs = [a for a in link.addresses if not a.startswith("fe80:")]
        try:
            out[name] = HostBridge.model_validate(
                {"ports": ports, "address": addrs, "gateway": gateway, "mtu": link.mtu})
        except ValueError:
            continue  # a name kvmnet's model refuses: leave it out of the picture
    return out


def live_host_links(host: HostState, bridges: Iterable[str]
                    ) -> tuple[dict[str, HostBond], dict[str, HostVlan]]:
    """The bonds and VLAN sub-interfaces below `bridges` (their ports, and a VLAN's
    bond), as `host.bonds` and `host.vlans` of a Spec; a bond in a mode kvmnet does not
    model is left out (and shows as a plain port)."""
    ports = [p for b in bridges for p, link in host.links.items() if link.master == b]
    bonds: dict[str, HostBond] = {}
    vlans: dict[str, HostVlan] = {}
    for name in ports:
        link = host.links[name]
        if link.kind == "vlan" and link.vlan is not None:
            try:
                vlans[name] = HostVlan(link=link.vlan[0], id=link.vlan[1])
            except ValueError:
                continue
            if link.vlan[0] in host.links and host.links[link.vlan[0]].kind == "bond":
                ports.append(link.vlan[0])
        elif link.kind == "bond" and link.bond_mode in BOND_MODES and name not in bonds:
            nics = sorted(n for n, x in host.links.items() if x.master == name)
            try:
                bonds[name] = HostBond.model_validate({"ports": nics,
                                                       "mode": link.bond_mode})
            except ValueError:
                continue
    return bonds, vlans


def default_route(host: HostState) -> tuple[str | None, str | None] | None:
    """(device, gateway) of the IPv4 default route, else the IPv6 one."""
    for dst in ("0.0.0.0/0", "::/0"):
        for r in host.routes:
            if r.dst == dst:
                return r.dev, r.gateway
    return None


# -- Spec -> Graph ------------------------------------------------------------------

def _short_range(r: DhcpRange, compact: bool = False) -> str:
    a, b = str(r.start), str(r.end)
    if r.start.version == 4:
        ha, hb = a.rsplit(".", 1), b.rsplit(".", 1)
        if ha[0] == hb[0]:
            return f".{ha[1]}–.{hb[1]}" if compact else f"{a}–.{hb[1]}"
    return f"{a}–{b}"


def _network_lines(net: Network, bridge: str | None, compact: bool) -> tuple[str, ...]:
    """Mode, bridge, subnets, DHCP ranges; compact: one line, as the cluster says the mode."""
    head = net.mode if net.mode != "macvtap" else f"macvtap {net.macvtap_mode or 'bridge'}"
    where = bridge or ", ".join(net.devices)
    parts = [] if compact and net.mode != "macvtap" else [head]
    parts += [where] if where else []
    lines = [" · ".join(parts)] if parts else []
    for ipc in net.all_ips():
        dhcp = [f"DHCP {_short_range(r, compact)}" for r in ipc.dhcp]
        if compact:
            lines.append(" · ".join([str(ipc.address), *dhcp]))
        else:
            lines += [str(ipc.address), *dhcp]
    if net.mtu:
        lines.append(f"MTU {net.mtu}")
    if compact:
        return (" · ".join(lines),) if lines else ()
    return tuple(lines)


def _fwd_text(f: PortForward, short: bool = False) -> str:
    listen = f"{f.listen}:" if f.listen else ":"
    target = "" if short else f.guest or str(f.address)
    return f"{f.proto} {listen}{f.host_port} → {target}:{f.guest_port or f.host_port}"


class _Builder:
    def __init__(self, spec: Spec, facts: Facts) -> None:
        self.spec, self.facts = spec, facts
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        # many networks: the clusters already say the mode, labels on edges only clutter
        self.compact = len(spec.networks) > COMPACT_AT
        self.fwd_rows: dict[tuple[str, int], list[str]] = {}

    def node(self, n: Node) -> str:
        self.nodes.setdefault(n.id, n)
        return n.id

    def edge(self, e: Edge) -> None:
        if e not in self.edges:
            self.edges.append(e)

    def dev(self, name: str) -> str:
        """A host bridge or NIC by name (made as a plain NIC if nothing else knows it)."""
        if name in self.spec.host.bridges:
            return f"br:{name}"
        host = self.spec.host
        if name in host.bonds:  # a bond: its NICs feed it
            b = host.bonds[name]
            nid = self.node(Node(f"nic:{name}", "nic", name, (f"bond {b.mode}",)))
            for nic in b.ports:
                self.edge(Edge(self.dev(nic), nid))
            return nid
        if name in host.vlans:  # a VLAN: its link carries it
            v = host.vlans[name]
            nid = self.node(Node(f"nic:{name}", "nic", name, (f"VLAN {v.id}",)))
            self.edge(Edge(self.dev(v.link), nid))
            return nid
        return self.node(Node(f"nic:{name}", "nic", name))

    def host(self) -> str | None:
        """The host's way out: the bridge or NIC the default route leaves through."""
        if self.facts.default_dev:
            return self.dev(self.facts.default_dev)
        for name, hb in self.spec.host.bridges.items():
            if hb.gateway is not None:
                return f"br:{name}"
        return None

    def outside(self) -> str:
        """The router on the LAN if kvmnet knows one, else a plain 'uplink' node."""
        gws = [(n, hb.gateway) for n, hb in self.spec.host.bridges.items() if hb.gateway]
        if gws:
            return f"router:{gws[0][1]}"
        if self.facts.default_gw:
            return f"router:{self.facts.default_gw}"
        return self.node(Node("uplink", "router", "uplink", ("host's default route",),
                              "outside"))

    def bridges(self) -> None:
        for name, hb in self.spec.host.bridges.items():
            lines = [str(a) for a in hb.address] + (["DHCP client"] if hb.dhcp else [])
            lines += ["STP on"] if hb.stp else []
            lines += [f"MTU {hb.mtu}"] if hb.mtu and hb.mtu != 1500 else []
            self.node(Node(f"br:{name}", "bridge", name, tuple(lines)))
            gw = hb.gateway or (self.facts.default_gw
                                if self.facts.default_dev == name else None)
            router = (self.node(Node(f"router:{gw}", "router", "LAN router", (str(gw),),
                                     "outside")) if gw else None)
            for p in hb.ports:
                self.edge(Edge(self.dev(p), f"br:{name}"))
                if router:
                    self.edge(Edge(router, f"nic:{p}"))
            if router and not hb.ports:
                self.edge(Edge(router, f"br:{name}"))
        dd, dg = self.facts.default_dev, self.facts.default_gw
        if dd and dg and dd not in self.spec.host.bridges:
            r = self.node(Node(f"router:{dg}", "router", "LAN router", (str(dg),), "outside"))
            self.edge(Edge(r, self.dev(dd)))

    def networks(self) -> None:
        way_out = self.host()
        for name, net in self.spec.networks.items():
            lines = _network_lines(net, net.bridge, self.compact)
            nid = self.node(Node(f"net:{name}", "network", name, lines, f"net-{net.mode}",
                                 net.mode))
            if net.mode in ("nat", "route", "open"):
                src = self.dev(net.uplink) if net.uplink else way_out or self.outside()
                label = {"nat": "NAT", "route": "routed", "open": "open"}[net.mode]
                self.edge(Edge(src, nid, "" if self.compact else label))
            elif net.mode == "bridge" and net.bridge:
                if net.bridge not in self.spec.host.bridges:
                    self.node(Node(f"br:{net.bridge}", "bridge", net.bridge, ("existing",)))
                self.edge(Edge(f"br:{net.bridge}", nid))
            elif net.mode == "macvtap":
                for d in net.devices:
                    self.edge(Edge(self.dev(d), nid))
            else:  # isolated, overlay: keep them in the networks' column
                self.edge(Edge(way_out or self.outside(), nid, style="invis"))

    def guests(self) -> None:
        macs = nic_macs(self.spec)
        for gname, g in self.spec.guests.items():
            rows: list[tuple[str, str]] = []
            for i, nic in enumerate(g.interfaces):
                mac = macs[(gname, i)]
                addrs = [str(a) for a in (nic.ipv4, nic.ipv6) if a is not None]
                for ip, src in self.facts.addresses.get(mac, ()):
                    tagged = f"{ip} ({src})"
                    if ip in addrs:
                        addrs[addrs.index(ip)] = tagged
                    elif tagged not in addrs:
                        addrs.append(tagged)
                fwds = [f"⇐ {t}" for t in self.fwd_rows.get((gname, i), ())]
                rows.append((f"n{i}", " · ".join([f"nic{i} {mac}", *addrs, *fwds])))
                if nic.network is not None:
                    src = f"net:{nic.network}"
                    if src not in self.nodes:
                        self.node(Node(src, "network", nic.network, ("not in the spec",),
                                       "net-bridge", "unknown"))
                else:
                    assert nic.bridge is not None
                    src = f"br:{nic.bridge}"
                    if src not in self.nodes:
                        self.node(Node(src, "bridge", nic.bridge, ("existing",)))
                self.edge(Edge(src, f"guest:{gname}", dst_port=f"n{i}"))
            self.node(Node(f"guest:{gname}", "guest", gname, cluster="guests",
                           rows=tuple(rows)))

    def forwards(self) -> None:
        """A node per forward; compact: a note on the guest's NIC row instead (made
        before guests())."""
        way_out = self.host() or self.outside()
        for name, net in self.spec.networks.items():
            for k, f in enumerate(net.forwards):
                port = self._guest_port(name, f)
                if self.compact and port:
                    key = (port[0].removeprefix("guest:"), int(port[1][1:]))
                    self.fwd_rows.setdefault(key, []).append(_fwd_text(f, short=True))
                    continue
                fid = self.node(Node(f"fwd:{name}:{k}", "forward", _fwd_text(f),
                                     cluster="forwards"))
                self.edge(Edge(self.dev(net.uplink) if net.uplink else way_out, fid,
                               style="dashed"))
                if port:
                    self.edge(Edge(fid, port[0], dst_port=port[1], style="dashed"))
                else:
                    self.edge(Edge(fid, f"net:{name}", style="dashed"))

    def _guest_port(self, net: str, f: PortForward) -> tuple[str, str] | None:
        for gname, g in self.spec.guests.items():
            for i, nic in enumerate(g.interfaces):
                if nic.network != net:
                    continue
                if (f.guest == gname) or (f.address is not None and f.address in
                                          (nic.ipv4, nic.ipv6)):
                    return f"guest:{gname}", f"n{i}"
        return None

    def routes(self) -> None:
        by_router: dict[str, list[str]] = {}
        for r in upstream_routes(self.spec):
            gw = self.spec.host.bridges[r.on].gateway if r.on else None
            router = f"router:{gw}" if gw and f"router:{gw}" in self.nodes else self.outside()
            via = str(r.via) if r.via else PLACEHOLDER
            uplink = self._uplink_address(r.subnet.version)
            if gw is None and uplink:   # live: the default route leaves by a plain NIC
                via = uplink
            by_router.setdefault(router, []).append(f"{r.subnet} via {via} ({r.network})")
        for i, (router, lines) in enumerate(by_router.items()):
            nid = self.node(Node(f"note:routes:{i}", "note", "route needed on the LAN router",
                                 tuple(lines), "outside"))
            self.edge(Edge(nid, router, style="dashed"))


    def _uplink_address(self, version: int) -> str | None:
        """The host's address on the NIC the default route leaves by (not a bridge)."""
        f = self.facts
        if not f.default_dev or f.default_dev in self.spec.host.bridges:
            return None
        for a in f.default_addresses:
            ip = a.split("/", 1)[0]
            if (":" in ip) == (version == 6) and not ip.startswith("fe80:"):
                return ip
        return None


def build_graph(spec: Spec, facts: Facts | None = None, title: str = "") -> Graph:
    b = _Builder(spec, facts or Facts())
    b.bridges()
    b.networks()
    b.forwards()
    b.guests()
    b.routes()
    return Graph(title, tuple(b.nodes.values()), tuple(b.edges))

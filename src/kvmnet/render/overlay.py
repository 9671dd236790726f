"""Spec -> the northbound rows kvmnet wants (pure).

Per overlay network: a Logical_Switch named like the network (other_config
subnet, and exclude_ips = every usable address outside the DHCP ranges plus the
network's own address, so OVN's dynamic allocation stays inside the ranges); a
DHCP_Options row (server_id and router = the network's address, server_mac,
lease_time; mtu and domain_name when the network sets them); and a
Logical_Switch_Port per guest NIC, "MAC IP" with port security when the NIC
(or a reservation for its MAC) gives an address, "MAC dynamic" otherwise.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator

from kvmnet.model.derive import nic_macs
from kvmnet.model.overlay import (
    GUEST_KEY,
    NETWORK_KEY,
    NIC_KEY,
    OWNER_KEY,
    OWNER_VALUE,
    ROLE_KEY,
    Dhcp,
    NbState,
    Port,
    Router,
    RouterPort,
    Switch,
)
from kvmnet.model.spec import IPConfig, Lease, Network, Spec
from kvmnet.render.interface import overlay_port_id

DEFAULT_LEASE = 3600
INFINITE_LEASE = 0xFFFFFFFF   # DHCP's "infinite" (RFC 2131 lease time option)


def overlay_networks(spec: Spec) -> dict[str, Network]:
    return {n: net for n, net in spec.networks.items() if net.mode == "overlay"}


def server_mac(name: str, net: Network) -> str:
    """The MAC OVN's DHCP server answers from: the network's mac, or a stable one
    (locally administered 02:6b:76 = "kv", then 3 bytes of sha256 of the name)."""
    return net.mac or _mac(f"ovn/{name}")


def lease_seconds(lease: Lease | None) -> int:
    if lease is None:
        return DEFAULT_LEASE
    if lease.expiry == 0:
        return INFINITE_LEASE
    return lease.expiry * {"seconds": 1, "minutes": 60, "hours": 3600}[lease.unit]


def _ranges_text(spans: list[tuple[int, int]]) -> str:
    """[(first, last)] -> 'A B..C', OVN's exclude_ips syntax."""
    v4 = ipaddress.IPv4Address
    return " ".join(str(v4(a)) if a == b else f"{v4(a)}..{v4(b)}" for a, b in spans)


def merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def excluded(ipc: IPConfig) -> list[tuple[int, int]]:
    """Usable addresses OVN must not hand out dynamically, as merged spans: those
    outside every DHCP range, and the network's own address."""
    net = ipc.address.network
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    out: list[tuple[int, int]] = []
    cur = first
    for a, b in merge([(int(r.start), int(r.end)) for r in ipc.dhcp]):
        if a > cur:
            out.append((cur, min(a - 1, last)))
        cur = max(cur, b + 1)
    if cur <= last:
        out.append((cur, last))
    host = int(ipc.address.ip)
    if first <= host <= last:
        out.append((host, host))
    return merge(out)


def switch_for(name: str, net: Network) -> Switch:
    assert net.ipv4 is not None
    other = {"subnet": str(net.ipv4.address.network)}
    ex = excluded(net.ipv4)
    if ex:
        other["exclude_ips"] = _ranges_text(ex)
    return Switch(name, other, {OWNER_KEY: OWNER_VALUE, NETWORK_KEY: name})


def dhcp_for(name: str, net: Network) -> Dhcp:
    ipc = net.ipv4
    assert ipc is not None
    lease = ipc.lease_time or next((r.lease_time for r in ipc.dhcp if r.lease_time), None)
    server = str(ipc.address.ip)
    options = {"server_id": server, "server_mac": server_mac(name, net),
               "lease_time": str(lease_seconds(lease)), "router": server}
    if net.mtu:
        options["mtu"] = str(net.mtu)
    if net.domain:
        options["domain_name"] = f'"{net.domain}"'
    return Dhcp(name, str(ipc.address.network), options,
                {OWNER_KEY: OWNER_VALUE, NETWORK_KEY: name})


def _ports(spec: Spec, nets: dict[str, Network],
           macs: dict[tuple[str, int], str] | None = None) -> Iterator[Port]:
    """`macs`: the plan's (salted with its owner and host, live NICs pinned), so each
    logical port has the MAC of the NIC libvirt plugs for it."""
    macs = nic_macs(spec) if macs is None else macs
    for gname in sorted(spec.guests):
        for idx, nic in enumerate(spec.guests[gname].interfaces):
            net = nets.get(nic.network or "")
            if net is None or net.ipv4 is None or nic.network is None:
                continue
            mac = macs[(gname, idx)]
            ip = nic.ipv4 or next((h.ip for h in net.ipv4.hosts if h.mac == mac), None)
            addr = f"{mac} {ip}" if ip is not None else f"{mac} dynamic"
            yield Port(overlay_port_id(nic.network, gname, idx), nic.network, (addr,),
                       (addr if ip is not None else mac,), nic.network,
                       {OWNER_KEY: OWNER_VALUE, NETWORK_KEY: nic.network, GUEST_KEY: gname,
                        NIC_KEY: str(idx)})


def _mac(seed: str) -> str:
    h = hashlib.sha256(seed.encode()).digest()
    return f"02:6b:76:{h[0]:02x}:{h[1]:02x}:{h[2]:02x}"


def router_names(name: str) -> dict[str, str]:
    """Names of the rows that make up network NAME's router (LSP/LRP names are
    unique across the whole database, hence the prefix)."""
    return {"int": f"kvmnet-{name}-int", "gw": f"kvmnet-{name}-gw",
            "ext": f"kvmnet-{name}-ext", "int_lsp": f"kvmnet-{name}-rtr",
            "ext_lsp": f"kvmnet-{name}-ext-rtr", "localnet": f"kvmnet-{name}-ext-localnet"}


def router_rows(name: str, net: Network) -> tuple[Router, Switch, list[Port]]:
    """Router NAME: an inside port on the network's switch at the network's address,
    a gateway port on the switch `kvmnet-NAME-ext` (a localnet port to the physnet)
    pinned to the gateway chassis; a default route to external.gateway; SNAT of the
    subnet to external.address."""
    assert net.router is not None and net.ipv4 is not None
    ext, names = net.router.external, router_names(name)
    ids = {OWNER_KEY: OWNER_VALUE, NETWORK_KEY: name}
    chassis = tuple((c, len(ext.chassis) - i) for i, c in enumerate(ext.chassis))
    router = Router(name, {**ids, ROLE_KEY: "router"}, (
        RouterPort(names["gw"], _mac(f"ovn-gw/{name}"), (str(ext.address),), chassis),
        RouterPort(names["int"], server_mac(name, net), (str(net.ipv4.address),)),
    ), (("0.0.0.0/0", str(ext.gateway)),) if ext.gateway else (),
        (("snat", str(ext.address.ip), str(net.ipv4.address.network)),)
        if net.router.snat else ())
    switch = Switch(names["ext"], {}, {**ids, ROLE_KEY: "external"})
    ports = [
        Port(names["int_lsp"], name, ("router",), (), None, {**ids, ROLE_KEY: "router"},
             type="router", options={"router-port": names["int"]}),
        Port(names["ext_lsp"], names["ext"], ("router",), (), None,
             {**ids, ROLE_KEY: "router"}, type="router", options={"router-port": names["gw"]}),
        Port(names["localnet"], names["ext"], ("unknown",), (), None,
             {**ids, ROLE_KEY: "external"}, type="localnet",
             options={"network_name": ext.physnet}),
    ]
    return router, switch, ports


def wanted_nb(spec: Spec, macs: dict[tuple[str, int], str] | None = None) -> NbState:
    nets = {n: net for n, net in overlay_networks(spec).items() if net.ipv4 is not None}
    switches = {n: switch_for(n, net) for n, net in nets.items()}
    ports = {p.name: p for p in _ports(spec, nets, macs)}
    routers: dict[str, Router] = {}
    for n, net in nets.items():
        if net.router is not None:
            routers[n], sw, rports = router_rows(n, net)
            switches[sw.name] = sw
            ports.update((p.name, p) for p in rports)
    return NbState(switches=switches, ports=ports,
                   dhcp={n: dhcp_for(n, net) for n, net in nets.items()}, routers=routers)

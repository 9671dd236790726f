"""Checks of networks: their addresses, DHCP, DNS, subnets that overlap, and bridges."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator

from kvmnet.model.spec import HostBridge, IPConfig, Network, Spec
from kvmnet.spec.findings import Findings
from kvmnet.spec.hosts import share_host, share_refs
from kvmnet.spec.positions import Path_

LIBVIRT_BRIDGED = ("nat", "route", "open", "isolated")  # libvirt makes the bridge
NO_IP_MODES = ("bridge", "macvtap")


def ip_blocks(net: Network) -> Iterator[tuple[Path_, IPConfig]]:
    if net.ipv4:
        yield ("ipv4",), net.ipv4
    if net.ipv6:
        yield ("ipv6",), net.ipv6
    for i, c in enumerate(net.more_ips):
        yield ("more_ips", i), c


def network(f: Findings, name: str, net: Network) -> None:
    base: Path_ = ("networks", name)
    mode = (base + ("mode",),)   # (what each rule here depends on)
    if net.mode in NO_IP_MODES:
        for key in ("ipv4", "ipv6", "more_ips", "dns", "domain", "nat"):
            if getattr(net, key):
                f.error(base + (key,), f"a {net.mode} network has no {key} of its own in "
                        "libvirt (the LAN's router and DHCP server serve it): remove it, or "
                        "use mode: nat or route for a network libvirt addresses", key=True,
                        refs=mode)
    if net.mode == "bridge" and not net.bridge:
        f.error(base + ("mode",), "mode: bridge needs bridge: NAME, the host bridge to "
                "use (e.g. bridge: br0, defined under host.bridges)", refs=[base + ("bridge",)])
    if net.mode == "macvtap":
        if not net.devices and not net.uplink:
            f.error(base + ("mode",), "mode: macvtap needs the host NIC(s) to share: add "
                    "devices: [eth0]", refs=[base + ("devices",), base + ("uplink",)])
        if net.bridge:
            f.error(base + ("bridge",), "a macvtap network has no bridge: remove bridge, or "
                    "use mode: bridge to attach guests to a host bridge", refs=mode)
    if net.macvtap_mode and net.mode != "macvtap":
        f.error(base + ("macvtap_mode",), "macvtap_mode only applies to mode: macvtap",
                refs=mode)
    _addressed(f, name, net)
    if net.nat and net.mode != "nat":
        f.error(base + ("nat",), f"nat settings only apply to mode: nat, not {net.mode}",
                key=True, refs=mode)
    if net.uplink and net.mode not in ("nat", "route"):
        f.error(base + ("uplink",), "uplink (the host NIC traffic leaves by) only applies to "
                "mode: nat or route", refs=mode)
    if net.mode in LIBVIRT_BRIDGED and net.devices:
        f.error(base + ("devices",), f"devices only apply to mode: macvtap; for {net.mode} "
                "write uplink: NIC", key=True, refs=mode)
    if net.forwards and net.mode != "nat":
        f.error(base + ("forwards",), f"port forwards reach guests behind NAT; {name} is "
                f"mode: {net.mode}, whose guests are reachable directly: remove forwards",
                key=True, refs=mode)
    for path, ipc in ip_blocks(net):
        _ip_block(f, base + path, ipc, path[0])


def _addressed(f: Findings, name: str, net: Network) -> None:
    """nat and route need the host's address on the network (refused without: libvirt
    would make a bare bridge that NATs or routes nothing); IPv6 on NAT is routed."""
    base: Path_ = ("networks", name)
    if net.mode in ("nat", "route") and not net.all_ips():
        what = "NAT" if net.mode == "nat" else "routing"
        f.error(base + ("mode",), f"mode: {net.mode} needs the host's address on the "
                f"network: without one libvirt makes a bridge with no {what}, no DHCP and "
                "no DNS. Write ipv4: {address: 10.0.0.1/24, dhcp: 10.0.0.100-10.0.0.199} "
                "(a subnet of your own), or mode: isolated for a bare bridge",
                refs=[base + ("ipv4",), base + ("ipv6",), base + ("more_ips",)], key=False)
    if net.mode == "nat" and net.ipv6 is not None and not (net.nat and net.nat.ipv6):
        f.warn(base + ("ipv6",), f"IPv6 on NAT network {name} is routed, not masqueraded "
               "(libvirt NATs IPv4 only by default): the LAN's router must route "
               f"{net.ipv6.address.network} to this host, or write nat: {{ipv6: true}} to "
               "masquerade it too", refs=[base + ("nat",)])


def _suggest_host(ipc: IPConfig, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """First usable address that is not in a DHCP range or a reservation."""
    taken = {h.ip for h in ipc.hosts}
    for addr in net.hosts():
        if addr not in taken and not any(addr in r for r in ipc.dhcp):
            return f"{addr}/{net.prefixlen}"
        if int(addr) - int(net.network_address) > 4096:
            break
    return f"{next(iter(net.hosts()), net.network_address)}/{net.prefixlen}"


def _ip_block(f: Findings, path: Path_, ipc: IPConfig, kind: str | int) -> None:
    iface = ipc.address
    net = iface.network
    want = {"ipv4": 4, "ipv6": 6}.get(str(kind))
    if want and iface.version != want:
        f.error(path + ("address",), f"{iface} is IPv{iface.version}: put it under "
                f"ipv{iface.version}:")
        return
    host = iface.ip
    if net.num_addresses > 2 and host == net.network_address:
        f.error(path + ("address",), f"{host} is the network address of {net}; the host "
                f"needs a usable address: write {_suggest_host(ipc, net)}")
    elif iface.version == 4 and net.num_addresses > 2 and host == net.broadcast_address:
        f.error(path + ("address",), f"{host} is the broadcast address of {net}; the host "
                f"needs a usable address: write {_suggest_host(ipc, net)}")
    _ranges(f, path, ipc)
    _reservations(f, path, ipc)

def _ranges(f: Findings, path: Path_, ipc: IPConfig) -> None:
    """DHCP ranges: same family, in order, inside the subnet, clear of the host's,
    network and broadcast addresses, and of each other."""
    iface = ipc.address
    net, host = iface.network, iface.ip
    for i, r in enumerate(ipc.dhcp):
        rp = path + ("dhcp", i)
        if r.start.version != iface.version:
            f.error(rp, f"range {r} is IPv{r.start.version} in an IPv{iface.version} block")
            continue
        if int(r.start) > int(r.end):
            f.error(rp, f"range {r} is reversed: write {r.end}-{r.start}")
            continue
        if r.start not in net or r.end not in net:
            f.error(rp, f"range {r} is not inside {net}: write a range within "
                    f"{_usable(net)}")
            continue
        if host in r:
            # int(): host + 1 overflows (AddressValueError) when host is the last address.
            fix = (f": start it after it, e.g. {host + 1}-{r.end}" if int(host) < int(r.end)
                   else f": end it before it, e.g. {r.start}-{host - 1}"
                   if int(host) > int(r.start) else ": remove it, or move the host address")
            f.error(rp, f"range {r} covers the host's own address {host}{fix}")
        if iface.version == 4 and (net.network_address in r or net.broadcast_address in r):
            f.error(rp, f"range {r} includes the network or broadcast address of {net}: "
                    f"write a range within {_usable(net)}")
        for j, other in enumerate(ipc.dhcp[:i]):
            if other.start.version == r.start.version and (
                    int(r.start) <= int(other.end) and int(other.start) <= int(r.end)):
                f.error(rp, f"range {r} overlaps range {j + 1} ({other}): merge them")


def _reservations(f: Findings, path: Path_, ipc: IPConfig) -> None:
    """DHCP reservations: inside the subnet, not the host's address, for someone, and
    each address, MAC and name reserved once."""
    iface = ipc.address
    net, host = iface.network, iface.ip
    seen_ip: dict[object, int] = {}
    seen_mac: dict[object, int] = {}
    seen_name: dict[object, int] = {}
    for i, h in enumerate(ipc.hosts):
        hp = path + ("hosts", i)
        if h.ip not in net:
            f.error(hp + ("ip",), f"reservation {h.ip} is outside {net}: write an address "
                    f"within {_usable(net)}")
        elif h.ip == host:
            f.error(hp + ("ip",), f"reservation {h.ip} is the host's own address: pick "
                    "another")
        if iface.version == 4 and not (h.mac or h.name):
            f.error(hp, "an IPv4 reservation needs mac: or name: to know whom it is for")
        if iface.version == 6 and not (h.id or h.name):
            f.error(hp, "an IPv6 reservation needs id: (DUID) or name: (DHCPv6 does not use "
                    "MACs)")
        checks: tuple[tuple[object, dict[object, int], str], ...] = (
            (h.ip, seen_ip, "address"), (h.mac, seen_mac, "MAC"), (h.name, seen_name, "name"))
        for value, seen, what in checks:
            if value is None:
                continue
            if value in seen:
                f.error(hp, f"duplicate reservation {what} {value} (also in entry "
                        f"{seen[value] + 1}): each {what} may be reserved once")
            else:
                seen[value] = i


def _usable(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if net.version == 4 and net.num_addresses > 2:
        return f"{net.network_address + 1}-{net.broadcast_address - 1}"
    return str(net)


def subnets(f: Findings, spec: Spec) -> None:
    blocks = [(name, path, ipc) for name, net in spec.networks.items()
              for path, ipc in ip_blocks(net)]
    nets = [c.address.network for _, _, c in blocks]
    spans = [(int(a.network_address) + (a.version << 128), int(a.broadcast_address)
              + (a.version << 128), i) for i, a in enumerate(nets)]
    for i, j in overlapping(spans):
        (n1, p1, _), (n2, p2, _) = blocks[i], blocks[j]
        a, b = nets[i], nets[j]
        if n1 != n2 and share_host(spec, n1, n2):
            f.error(("networks", n1) + p1 + ("address",), f"{a} overlaps {b} of network "
                    f"{n2}: give each network its own subnet",
                    refs=[("networks", n2) + p2 + ("address",), *share_refs(n1, n2)])


def overlapping(spans: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """(later, earlier) index pairs of the closed intervals (first, last, index) that
    overlap, in the order a loop over all pairs would find them; a sweep over the
    sorted starts, so n disjoint intervals cost n log n, not n^2."""
    pairs: list[tuple[int, int]] = []
    active: list[tuple[int, int]] = []             # (last, index) of those still open
    for first, last, i in sorted(spans):
        active = [(e, k) for e, k in active if e >= first]
        pairs += [(max(i, k), min(i, k)) for _, k in active]
        active.append((last, i))
    return sorted(pairs)


def bridges(f: Findings, spec: Spec) -> None:
    owners: dict[str, list[str]] = defaultdict(list)
    for name, net in spec.networks.items():
        if net.bridge:
            owners[net.bridge].append(name)
    for br, names in owners.items():
        libvirt_made = [n for n in names if spec.networks[n].mode in LIBVIRT_BRIDGED]
        if len(names) > 1 and libvirt_made:
            modes = [("networks", m, "mode") for m in names]
            for k, n in enumerate(names[1:], 1):
                first = next((m for m in names[:k] if share_host(spec, m, n)), None)
                if first is not None:
                    f.error(("networks", n, "bridge"), f"bridge {br} is already used by "
                            f"network {first}: give each libvirt network its own bridge name",
                            refs=[("networks", first, "bridge"), *modes,
                                  *share_refs(first, n)])
        if libvirt_made and br in spec.host.bridges:
            mode = spec.networks[libvirt_made[0]].mode
            f.error(("networks", libvirt_made[0], "bridge"), f"{br} is a host bridge (under "
                    f"host.bridges); libvirt creates the bridge of a {mode} "
                    f"network itself: use another name (e.g. {_free_virbr(spec)}), or mode: "
                    "bridge to put guests on the host bridge",
                    refs=[("networks", libvirt_made[0], "mode"), ("host", "bridges", br)])
    for name, net in spec.networks.items():
        if net.mode == "bridge" and net.bridge and net.bridge not in spec.host.bridges:
            f.warn(("networks", name, "bridge"), f"host bridge {net.bridge} is not under "
                   "host.bridges: it must already exist on the host (plan checks)",
                   refs=[("networks", name, "mode"), ("host", "bridges")])
    _host_bridges(f, spec)

def _host_bridges(f: Findings, spec: Spec) -> None:
    """host.bridges: ports are NICs in one bridge only; the gateway in a subnet of the
    bridge; not dhcp: and a static address together."""
    port_of: dict[str, str] = {}
    for br, hb in spec.host.bridges.items():
        for i, port in enumerate(hb.ports):
            path: Path_ = ("host", "bridges", br, "ports", i)
            if port in spec.host.bridges:
                f.error(path, f"{port} is itself a bridge: a bridge's ports are NICs, "
                        "bonds, VLANs or veths", refs=[("host", "bridges", port)])
            elif port in port_of:
                f.error(path, f"{port} is already a port of {port_of[port]}: an interface "
                        "can be in one bridge only",
                        refs=[("host", "bridges", port_of[port], "ports")])
            else:
                port_of[port] = br
        _gateways(f, br, hb)
        if hb.dhcp and hb.address:
            f.warn(("host", "bridges", br, "dhcp"), "dhcp: true together with static "
                   "address: the bridge gets both", refs=[("host", "bridges", br, "address")])
    _profile_names(f, spec)


def _gateways(f: Findings, br: str, hb: HostBridge) -> None:
    """One default gateway per IP version, each in one of the bridge's subnets of its
    version (a link-local IPv6 one is on every link); gateway6 beside SLAAC."""
    base: Path_ = ("host", "bridges", br)
    if hb.gateway is not None and hb.gateway.version == 6 and hb.gateway6 is not None:
        f.error(base + ("gateway",), f"gateway {hb.gateway} is IPv6, and gateway6: "
                f"{hb.gateway6} gives the IPv6 gateway too: write the IPv4 gateway here "
                "(or remove gateway:)", refs=[base + ("gateway6",)])
        return
    for key, gw in (("gateway", hb.gateway), ("gateway6", hb.gateway6)):
        same = [a for a in hb.address if gw is not None and a.version == gw.version]
        if gw is None or not same or gw.is_link_local or any(gw in a.network for a in same):
            continue
        f.warn(base + (key,), f"{key} {gw} is not in any of {br}'s subnets "
               f"({', '.join(str(a.network) for a in same)})", refs=[base + ("address",)])
    gw6 = hb.gateway_for(6)
    if hb.slaac and gw6 is not None and hb.metric is None:
        f.warn(base + ("slaac",), f"slaac: true and the IPv6 gateway {gw6}: the router's "
               "advertisements give the default route already, and a static one through "
               "the router that sends them, with the same metric, makes the kernel drop "
               "them (the SLAAC address is not renewed): remove "
               f"{'gateway6' if hb.gateway6 else 'gateway'}:, or give metric: (e.g. 100)",
               refs=[base + ("gateway6",), base + ("gateway",), base + ("metric",)])
    if gw6 is not None and not hb.slaac and not any(a.version == 6 for a in hb.address):
        f.warn(base + ("gateway6" if hb.gateway6 else "gateway",), f"the IPv6 gateway "
               f"{gw6}, but {br} gets no IPv6 address: add one to address:, or write "
               "slaac: true", refs=[base + ("address",), base + ("slaac",)])


def _profile_names(f: Findings, spec: Spec) -> None:
    """NetworkManager names a profile after its bridge, and a port's after bridge and
    port: bridge br-port-eth1 and port eth1 of bridge br would overwrite each other."""
    from kvmnet.render.host_nm import profile_id

    seen: dict[str, tuple[Path_, str]] = {}
    named: list[tuple[Path_, str, str]] = []
    for br, hb in spec.host.bridges.items():
        named.append((("host", "bridges", br), profile_id(br), f"bridge {br}"))
        named += [(("host", "bridges", br, "ports", i), profile_id(br, p),
                   f"port {p} of bridge {br}") for i, p in enumerate(hb.ports)
                  if p not in spec.host.bonds and p not in spec.host.vlans]
    for bond, hbond in spec.host.bonds.items():
        named.append((("host", "bonds", bond), profile_id(bond), f"bond {bond}"))
        named += [(("host", "bonds", bond, "ports", i), profile_id(bond, p),
                   f"port {p} of bond {bond}") for i, p in enumerate(hbond.ports)]
    named += [(("host", "vlans", v), profile_id(v), f"VLAN {v}") for v in spec.host.vlans]
    for path, pid, what in named:
        if pid not in seen:
            seen[pid] = (path, what)
            continue
        f.error(path, f"NetworkManager would name the profile of {what} {pid}, "
                f"which is already the profile of {seen[pid][1]}: rename one of the "
                f"two {'bridges' if path[1] == seen[pid][0][1] == 'bridges' else 'links'}",
                key=len(path) == 3, refs=[seen[pid][0]])


def _free_virbr(spec: Spec) -> str:
    used = set(spec.host.bridges) | {n.bridge for n in spec.networks.values() if n.bridge}
    return next(f"virbr{i}" for i in range(len(used) + 1) if f"virbr{i}" not in used)

"""check: pure semantic checks of a loaded Spec; every finding at once.

Each finding is a Problem at the position of the value it is about, with a
message that says what to write instead. Errors stop; warnings print.
Checks that need the live host (routes, host links, other domains) run in
plan, not here.

check_file runs them on what load could build of a file with type errors too (the
values the errors are about left out: spec.load.Loaded), so one run reports both. A
finding is then dropped when it may only exist because of what was left out: when it
is at, inside or above a left-out path, or when one of the paths it `refs` (what it
compares with or depends on: another network's subnet, the network a NIC names, the
mode that makes a key wrong) is.
"""

from __future__ import annotations

import ipaddress
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator

from kvmnet.errors import Problem, close_matches
from kvmnet.records import field, record
from kvmnet.spec.derive import ip_config_for, nic_macs
from kvmnet.spec.hosts import check_hosts, share_host, share_refs
from kvmnet.spec.load import Path_, Positions, format_path, load_partial
from kvmnet.spec.model import IPConfig, Network, PortForward, Spec

LIBVIRT_BRIDGED = ("nat", "route", "open", "isolated")  # libvirt makes the bridge
NO_IP_MODES = ("bridge", "macvtap")


@record
class Findings:
    pos: Positions
    file: str
    items: list[Problem] = field(default_factory=list)
    pruned: frozenset[Path_] = frozenset()   # what load left out (see the docstring)

    def error(self, path: Path_, msg: str, key: bool = False, refs: Iterable[Path_] = ()
              ) -> None:
        if not (self.pruned and self._pruned(path, refs)):
            self.items.append(Problem(self.file, *self.pos.find(path, key),
                                      _where(path) + msg))

    def warn(self, path: Path_, msg: str, key: bool = False, refs: Iterable[Path_] = ()
             ) -> None:
        if not (self.pruned and self._pruned(path, refs)):
            self.items.append(Problem(self.file, *self.pos.find(path, key),
                                      _where(path) + msg, "warning"))

    def _pruned(self, path: Path_, refs: Iterable[Path_]) -> bool:
        """Is path, or a path it refers to, at, inside or above a left-out value?"""
        return any(a[:len(b)] == b or b[:len(a)] == a
                   for a in (path, *refs) for b in self.pruned)


def _where(path: Path_) -> str:
    return format_path(path) + ": " if path else ""


def check_file(path: str | os.PathLike[str]) -> tuple[Spec, Positions, list[Problem]]:
    """load + check in one run: the file's YAML and type errors, and the findings of
    the checks on the rest of it (sorted). Raises SpecError only when nothing of the
    file can be modelled (YAML syntax, not a mapping, unreadable)."""
    loaded = load_partial(path)
    found = check(loaded.spec, loaded.pos, os.fspath(path), loaded.pruned)
    return (loaded.spec, loaded.pos,
            sorted(loaded.problems + found, key=Problem.sort_key) if loaded.problems
            else found)


def check(spec: Spec, pos: Positions | None = None, file: str = "<spec>",
          pruned: frozenset[Path_] = frozenset()) -> list[Problem]:
    """All findings, errors and warnings, sorted by position. `pruned`: the paths load
    left out of spec (Loaded.pruned); findings that may come from that are dropped."""
    f = Findings(pos or Positions(), file, pruned=pruned)
    for name, net in spec.networks.items():
        _network(f, name, net)
    _subnets(f, spec)
    _bridges(f, spec)
    _guests(f, spec)
    _macs(f, spec)
    _forwards(f, spec)
    _overlay(f, spec)
    check_hosts(f, spec)
    if not errors(f.items):
        _renders(f, spec)
    return sorted(f.items, key=Problem.sort_key)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _ip_blocks(net: Network) -> Iterator[tuple[Path_, IPConfig]]:
    if net.ipv4:
        yield ("ipv4",), net.ipv4
    if net.ipv6:
        yield ("ipv6",), net.ipv6
    for i, c in enumerate(net.more_ips):
        yield ("more_ips", i), c


def _network(f: Findings, name: str, net: Network) -> None:
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
    for path, ipc in _ip_blocks(net):
        _ip_block(f, base + path, ipc, path[0])


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


def _subnets(f: Findings, spec: Spec) -> None:
    blocks = [(name, path, ipc) for name, net in spec.networks.items()
              for path, ipc in _ip_blocks(net)]
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


def _bridges(f: Findings, spec: Spec) -> None:
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
        if hb.gateway and hb.address and not any(
                hb.gateway in a.network for a in hb.address if a.version == hb.gateway.version):
            f.warn(("host", "bridges", br, "gateway"), f"gateway {hb.gateway} is not in any "
                   f"of {br}'s subnets ({', '.join(str(a.network) for a in hb.address)})",
                   refs=[("host", "bridges", br, "address")])
        if hb.dhcp and hb.address:
            f.warn(("host", "bridges", br, "dhcp"), "dhcp: true together with static "
                   "address: the bridge gets both", refs=[("host", "bridges", br, "address")])


def _free_virbr(spec: Spec) -> str:
    used = set(spec.host.bridges) | {n.bridge for n in spec.networks.values() if n.bridge}
    return next(f"virbr{i}" for i in range(len(used) + 1) if f"virbr{i}" not in used)


def _guests(f: Findings, spec: Spec) -> None:
    net_of_bridge = {n.bridge: name for name, n in spec.networks.items()
                     if n.bridge and n.mode in LIBVIRT_BRIDGED}
    host_bridges = list(spec.host.bridges) + [
        n.bridge for n in spec.networks.values() if n.mode == "bridge" and n.bridge]
    bridge_nets = {n.bridge: name for name, n in spec.networks.items()
                   if n.mode == "bridge" and n.bridge}
    ips: dict[object, tuple[str, int]] = {}
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            path: Path_ = ("guests", gname, "interfaces", i)
            if nic.network is not None and nic.network not in spec.networks:
                close = close_matches(nic.network, list(spec.networks), n=1)
                hint = (f"did you mean {close[0]!r}?" if close else
                        f"define it under networks:, or use one of "
                        f"{', '.join(spec.networks) or '(none yet)'}")
                f.error(path + ("network",), f"unknown network {nic.network!r}: {hint}",
                        refs=[("networks", nic.network)])
            if nic.bridge is not None and nic.bridge in net_of_bridge:
                owner = net_of_bridge[nic.bridge]
                alt = ", or ".join(
                    [f"network: {n}" for n in bridge_nets.values()]
                    + [f"bridge: {b}" for b in spec.host.bridges][:1])
                f.error(path + ("bridge",), f"{nic.bridge} is the bridge of libvirt network "
                        f"{owner} (mode {spec.networks[owner].mode}), not a host bridge: for "
                        f"the LAN write {alt or 'bridge: <your host bridge>'}; to use "
                        f"{owner} write network: {owner}",
                        refs=[("networks", owner, "bridge"), ("networks", owner, "mode")])
            elif nic.bridge is not None and nic.bridge not in host_bridges:
                f.warn(path + ("bridge",), f"bridge {nic.bridge} is not in the spec: it must "
                       "already exist on the host", refs=[("host", "bridges"), ("networks",)])
            net = spec.networks.get(nic.network or "")
            on: Path_ = ("networks", nic.network or "")
            subnets = [on + ("ipv4",), on + ("ipv6",), on + ("more_ips",)]
            for fam in ("ipv4", "ipv6"):
                addr = getattr(nic, fam)
                if addr is None:
                    continue
                if nic.network is None or net is None:
                    if nic.bridge is not None:
                        f.error(path + (fam,), "an address can only be reserved on a libvirt "
                                "network with DHCP: the LAN's DHCP server assigns it on a "
                                "bridge; remove it or attach with network:",
                                refs=[path + ("network",)])
                    continue
                if net.mode in NO_IP_MODES:
                    f.error(path + (fam,), f"network {nic.network} is mode {net.mode}: "
                            "libvirt runs no DHCP there, so it cannot reserve an address; "
                            "reserve it on the LAN's DHCP server and remove it here",
                            refs=[on + ("mode",)])
                    continue
                ipc = ip_config_for(net, addr)
                if ipc is None:
                    have = ", ".join(str(c.address.network) for c in net.all_ips())
                    f.error(path + (fam,), f"{addr} is not in network {nic.network}'s "
                            f"subnet ({have or 'none'})", refs=subnets)
                    continue
                sub = ipc.address.network
                if addr == ipc.address.ip:
                    f.error(path + (fam,), f"{addr} is the host's address on {nic.network}: "
                            "pick another", refs=subnets)
                elif addr == sub.network_address or (
                        sub.version == 4 and addr == sub.broadcast_address):
                    f.error(path + (fam,), f"{addr} is the network or broadcast address of "
                            f"{sub}: pick a host address", refs=subnets)
                if addr in ips:
                    og, oi = ips[addr]
                    f.error(path + (fam,), f"{addr} is also given to {og} (NIC {oi + 1}): "
                            "each address once", refs=[("guests", og, "interfaces")])
                else:
                    ips[addr] = (gname, i)


def _macs(f: Findings, spec: Spec) -> None:
    seen: dict[str, Path_] = {}
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            if not nic.mac:
                continue
            path: Path_ = ("guests", gname, "interfaces", i, "mac")
            _mac_value(f, path, nic.mac)
            if nic.mac in seen:
                other = seen[nic.mac]
                f.error(path, f"MAC {nic.mac} is also used by {other[1]} NIC "
                        f"{int(other[3]) + 1}: MACs must be unique (leave mac out to get a "
                        "stable generated one)", refs=[other])
            else:
                seen[nic.mac] = path
    for name, net in spec.networks.items():
        if net.mac:
            _mac_value(f, ("networks", name, "mac"), net.mac)
        for p, ipc in _ip_blocks(net):
            for i, h in enumerate(ipc.hosts):
                if h.mac:
                    _mac_value(f, ("networks", name) + p + ("hosts", i, "mac"), h.mac)
    # A reservation and a guest NIC with the same MAC must agree on the address.
    macs = nic_macs(spec)
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            onet = spec.networks.get(nic.network or "")
            if onet is None or nic.ipv4 is None:
                continue
            for p, ipc in _ip_blocks(onet):
                for h in ipc.hosts:
                    if h.mac == macs[(gname, i)] and h.ip != nic.ipv4:
                        f.error(("guests", gname, "interfaces", i, "ipv4"), f"{gname}'s NIC "
                                f"has MAC {h.mac}, which networks.{nic.network}.{p[0]}.hosts "
                                f"reserves {h.ip} for: keep one of the two",
                                refs=[("networks", nic.network or "") + p + ("hosts",)])


def _mac_value(f: Findings, path: Path_, mac: str) -> None:
    first = int(mac[:2], 16)
    if mac == "00:00:00:00:00:00":
        f.error(path, "00:00:00:00:00:00 is not a usable MAC: leave mac out to get a stable "
                "generated one")
    elif first & 1:
        f.error(path, f"{mac} is a multicast MAC (the first byte is odd); a NIC needs a "
                f"unicast one: e.g. {first & 0xFE:02x}{mac[2:]}, or leave mac out to get a "
                "stable generated one")


def _forwards(f: Findings, spec: Spec) -> None:
    for name, net in spec.networks.items():
        used: list[tuple[str, object, object, int]] = []
        for i, fw in enumerate(net.forwards):
            path: Path_ = ("networks", name, "forwards", i)
            if (fw.guest is None) == (fw.address is None):
                f.error(path, "a forward needs exactly one of guest: NAME or address: IP")
            if fw.guest is not None:
                _forward_guest(f, spec, name, path, fw.guest)
            if fw.address is not None and not any(fw.address in c.address.network
                                                  for c in net.all_ips()):
                f.error(path + ("address",), f"{fw.address} is not in network {name}'s "
                        "subnet", refs=[("networks", name, k)
                                        for k in ("ipv4", "ipv6", "more_ips")])
            if fw.guest_port and fw.guest_port.size not in (1, fw.host_port.size):
                f.error(path + ("guest_port",), f"host_port {fw.host_port} has "
                        f"{fw.host_port.size} ports but guest_port {fw.guest_port} has "
                        f"{fw.guest_port.size}: map a range to a range of the same length, "
                        "or to one port")
            _forward_families(f, path, fw)
            for proto, hp, listen, j in used:
                if proto == fw.proto and hp.overlaps(fw.host_port) and (  # type: ignore[attr-defined]
                        listen is None or fw.listen is None or listen == fw.listen):
                    f.error(path + ("host_port",), f"{fw.proto} port {fw.host_port} is "
                            f"already forwarded by entry {j + 1} ({hp}): each host port once")
                    break
            used.append((fw.proto, fw.host_port, fw.listen, i))
    all_fw = [(n, i, fw) for n, net in spec.networks.items() for i, fw in enumerate(net.forwards)]
    protos = {p: n << 17 for n, p in enumerate(sorted({fw.proto for _, _, fw in all_fw}))}
    spans = [(protos[fw.proto] + fw.host_port.first, protos[fw.proto] + fw.host_port.last, k)
             for k, (_, _, fw) in enumerate(all_fw)]
    for k, j in overlapping(spans):
        (n1, i1, a), (n2, _i2, b) = all_fw[k], all_fw[j]
        if n1 != n2 and (a.listen is None or b.listen is None or a.listen == b.listen):
            f.error(("networks", n1, "forwards", i1, "host_port"), f"{a.proto} port "
                    f"{a.host_port} is already forwarded by network {n2}",
                    refs=[("networks", n2, "forwards")])


def _forward_families(f: Findings, path: Path_, fw: PortForward) -> None:
    """listen and sources in the guest address's family (a guest: forwards to its ipv4);
    no loopback listen: a packet from 127.0.0.1 may not leave the host."""
    version = fw.address.version if fw.address is not None else 4
    guest = [path + ("address",), path + ("guest",)]   # (what says the family)
    if fw.listen is not None and fw.listen.is_loopback:
        f.error(path + ("listen",), f"{fw.listen} is a loopback address, which the host "
                "cannot forward to a guest: listen on one of the host's other addresses, "
                "or leave listen out (every address of the host)")
    elif fw.listen is not None and fw.listen.version != version:
        f.error(path + ("listen",), f"listen {fw.listen} is IPv{fw.listen.version} but the "
                f"guest address is IPv{version}: forward within one address family",
                refs=guest)
    for k, src in enumerate(fw.sources):
        if src.version != version:
            f.error(path + ("sources", k), f"source {src} is IPv{src.version} but the guest "
                    f"address is IPv{version}: forward within one address family",
                    refs=guest)


def _forward_guest(f: Findings, spec: Spec, netname: str, path: Path_, guest: str) -> None:
    g = spec.guests.get(guest)
    if g is None:
        close = close_matches(guest, list(spec.guests), n=1)
        f.error(path + ("guest",), f"unknown guest {guest!r}" + (
            f": did you mean {close[0]!r}?" if close else ": define it under guests:"),
            refs=[("guests", guest)])
        return
    if not any(nic.network == netname and nic.ipv4 for nic in g.interfaces):
        f.error(path + ("guest",), f"kvmnet does not know {guest}'s address on {netname}: "
                f"give the guest's NIC on {netname} an ipv4: (a DHCP reservation), or "
                "forward to address: IP", refs=[("guests", guest, "interfaces")])


# -- overlay networks (OVN; kvmnet.ovn) ---------------------------------------

OVERLAY_UNUSED = ("bridge", "stp", "delay", "domain_local", "allow_guest_ipv6", "ipv6",
                  "more_ips", "dns", "devices", "uplink")


def _overlay(f: Findings, spec: Spec) -> None:
    """An overlay network is a logical switch with OVN's DHCP: an IPv4 subnet with a
    DHCP range, written to the northbound database the spec names under ovn:."""
    macs = nic_macs(spec)
    for name, net in spec.networks.items():
        base: Path_ = ("networks", name)
        if net.router is not None and net.mode != "overlay":
            f.error(base + ("router",), "router: is an OVN logical router and applies to mode: "
                    f"overlay only; a {net.mode} network's host routes for it", key=True,
                    refs=[base + ("mode",)])
        if net.mode != "overlay":
            continue
        if net.router is not None and net.ipv4 is not None:
            ext = net.router.external
            if ext.address.version != 4 or ext.address.network.overlaps(
                    net.ipv4.address.network):
                f.error(base + ("router", "external", "address"), f"{ext.address} must be an "
                        f"IPv4 address outside {net.ipv4.address.network} (the router's "
                        "address on the external network)", refs=[base + ("ipv4", "address")])
            elif ext.gateway is not None and ext.gateway not in ext.address.network:
                f.error(base + ("router", "external", "gateway"), f"gateway {ext.gateway} is "
                        f"not in {ext.address.network}, the external network")
        if spec.ovn is None:
            f.error(base + ("mode",), "an overlay network lives in OVN: add ovn: {northbound: "
                    "unix:/run/ovn/ovnnb_db.sock} (or tcp:HOST:6641) at the top of the spec",
                    refs=[("ovn",)])
        for key in OVERLAY_UNUSED:
            if getattr(net, key):
                f.error(base + (key,), f"{key} does not apply to an overlay network (OVN "
                        "serves it with a logical switch and its own DHCP): remove it",
                        key=True)
        if net.ipv4 is None:
            f.error(base + ("mode",), "an overlay network needs ipv4: {address: "
                    "10.240.1.1/24, dhcp: 10.240.1.100-10.240.1.199} (OVN's DHCP serves it)",
                    refs=[base + ("ipv4",)])
            continue
        if not net.ipv4.dhcp:
            f.error(base + ("ipv4",), "an overlay network needs a DHCP range: add dhcp: "
                    "START-END (OVN's DHCP hands out addresses from it)", key=True)
        for key in ("routes", "tftp", "bootp"):
            if getattr(net.ipv4, key):
                f.error(base + ("ipv4", key), f"ipv4.{key} does not apply to an overlay "
                        "network: remove it", key=True)
        on_net = {macs[(g, i)] for g, guest in spec.guests.items()
                  for i, nic in enumerate(guest.interfaces) if nic.network == name}
        for i, h in enumerate(net.ipv4.hosts):
            if h.mac is None or h.mac not in on_net:
                f.warn(base + ("ipv4", "hosts", i), "OVN reserves addresses only for guest "
                       "NICs in the spec: no NIC on this network has this MAC, so this "
                       "reservation does nothing; give the guest's NIC ipv4: instead",
                       refs=[("guests",)])
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            onet = spec.networks.get(nic.network or "")
            if onet is not None and onet.mode == "overlay" and nic.portgroup:
                f.error(("guests", gname, "interfaces", i, "portgroup"), "a NIC on an overlay "
                        "network has no portgroup (it is a port of OVN's br-int): remove it",
                        refs=[("networks", nic.network or "", "mode")])


def _renders(f: Findings, spec: Spec) -> None:
    """What the other checks let through must also render: libvirt XML of every network
    (xml_extra holds XML text and paths into it), so plan cannot fail on it later."""
    from kvmnet.errors import KvmnetError
    from kvmnet.render.network_xml import network_xml

    macs = nic_macs(spec)  # once: per network it would make checking quadratic
    for name, net in spec.networks.items():
        if net.mode == "overlay":
            continue
        try:
            network_xml(spec, name, macs)
        except (KvmnetError, ValueError) as e:
            key = ("xml_extra",) if net.xml_extra else ()
            f.error(("networks", name, *key), f"cannot be written as libvirt XML: {e}",
                    key=bool(key), refs=[("networks", name), ("guests",)])

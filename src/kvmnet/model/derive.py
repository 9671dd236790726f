"""Values derived from a Spec that several stages need: stable MACs for NICs
without one, and the DHCP reservations that guests' `ipv4:` imply."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from kvmnet.model.spec import DhcpHost, GuestNic, IPConfig, Network, Spec
from kvmnet.model.vlan import Vlans

QEMU_OUI = "52:54:00"


def stable_mac(guest: str, index: int, salt: int = 0, where: str = "") -> str:
    """52:54:00 + 3 bytes of sha256('[WHERE/]guest/index[/salt]'): same input, same MAC,
    forever. `where` is mac_key(owner, host): two hosts (or two owners) with a guest of
    the same name get other MACs; '' is the formula of a kvmnet from before owners."""
    key = f"{guest}/{index}" if salt == 0 else f"{guest}/{index}/{salt}"
    if where:
        key = f"{where}/{key}"
    import hashlib  # here: only specs with guests need a generated MAC

    h = hashlib.sha256(key.encode()).digest()
    return f"{QEMU_OUI}:{h[0]:02x}:{h[1]:02x}:{h[2]:02x}"


def spec_macs(spec: Spec) -> set[str]:
    """Every MAC the spec writes out by hand (guest NICs and DHCP reservations)."""
    macs = {nic.mac for g in spec.guests.values() for nic in g.interfaces if nic.mac}
    for net in spec.networks.values():
        for ipc in net.all_ips():
            macs.update(h.mac for h in ipc.hosts if h.mac)
    return macs


def mac_key(owner: str | None, host: str) -> str:
    """What generated MACs are salted with: the spec's owner and the host it is planned
    on (model.uri.mac_host; '' for a spec with hosts:, whose guests may migrate)."""
    return f"{owner or ''}@{host}" if owner or host else ""


def legacy_macs(guest: str, index: int) -> list[str]:
    """The MACs a kvmnet from before owners may have given NIC `index` of `guest`."""
    return [stable_mac(guest, index, salt) for salt in range(4)]


class NicMacs(dict[tuple[str, int], str]):
    """nic_macs' result: (guest, NIC index) -> MAC. It also lists, per network, the
    NICs on it (guests in name order), so that dhcp_hosts of every network of a big
    spec costs one walk of the guests, not one per network."""

    def __init__(self) -> None:
        super().__init__()
        self.on_network: dict[str, list[tuple[str, int]]] = {}


# The last spec's NIC MACs (without `taken`), by the spec's identity: check asks for
# them three times and plan once more, ~40 ms each for 10000 NICs. A Spec is frozen, so
# the same object has the same MACs; callers only read the result.
_last: tuple[Spec, NicMacs] | None = None


def nic_macs(spec: Spec, taken: Iterable[str] = (), host: str = "",
             pins: dict[tuple[str, int], str] | None = None) -> NicMacs:
    """MAC of every guest NIC: its own, the one it has live (`pins`: plan keeps the MAC
    of a NIC kvmnet attached), or a stable generated one salted with the spec's owner
    and `host` (mac_key).

    Generated MACs never collide with the spec's explicit MACs, with `taken`
    or with each other; on a collision the salt is bumped, walking guests in
    name order so the result does not depend on YAML order. The result is
    shared between callers: read it, never change it.
    """
    global _last
    extra = {m.lower() for m in taken}
    last = _last
    pins = pins or {}
    where = mac_key(spec.owner, host)
    if not extra and not pins and not host and last is not None and last[0] is spec:
        return last[1]
    used = spec_macs(spec) | extra | set(pins.values())
    out = NicMacs()
    for gname in sorted(spec.guests):
        for i, nic in enumerate(spec.guests[gname].interfaces):
            if nic.network is not None:
                out.on_network.setdefault(nic.network, []).append((gname, i))
            if nic.mac or (gname, i) in pins:
                out[(gname, i)] = nic.mac or pins[(gname, i)]
                continue
            salt = 0
            mac = stable_mac(gname, i, 0, where)
            while mac in used:
                salt += 1
                mac = stable_mac(gname, i, salt, where)
            used.add(mac)
            out[(gname, i)] = mac
    if not extra and not pins and not host:
        _last = (spec, out)
    return out


def ip_config_for(net: Network, addr: ipaddress.IPv4Address | ipaddress.IPv6Address
                  ) -> IPConfig | None:
    for ipc in net.all_ips():
        if addr in ipc.address.network:
            return ipc
    return None


def dhcp_hosts(spec: Spec, netname: str, macs: dict[tuple[str, int], str] | None = None
               ) -> dict[int, list[DhcpHost]]:
    """Reservations per IP block index of a network: the spec's `hosts:` plus one per
    guest NIC with an `ipv4:` on this network (its MAC, name = guest name) and one per
    NIC with an `ipv6:` (DHCPv6: libvirt's IPv6 <host> has no MAC, so it is matched by
    name, the guest's, which the guest sends as its hostname), in a stable order."""
    net = spec.networks[netname]
    ips = net.all_ips()
    out: dict[int, list[DhcpHost]] = {i: list(c.hosts) for i, c in enumerate(ips)}
    if not isinstance(macs, NicMacs):  # a plain dict (or none): index the NICs here
        macs = nic_macs(spec) if macs is None else _indexed(spec, macs)
    for gname, idx in macs.on_network.get(netname, ()):
        guest = spec.guests.get(gname)  # macs may cover more than spec (a host's share)
        nic = guest.interfaces[idx] if guest and idx < len(guest.interfaces) else None
        if nic is None or nic.network != netname:
            continue
        if nic.ipv4 is not None:
            _reserve(out, ips, DhcpHost(ip=nic.ipv4, mac=macs[(gname, idx)], name=gname))
        if nic.ipv6 is not None:
            _reserve(out, ips, DhcpHost(ip=nic.ipv6, name=gname))
    return out


def _reserve(out: dict[int, list[DhcpHost]], ips: list[IPConfig], h: DhcpHost) -> None:
    """h into the block that holds its address (once)."""
    for i, c in enumerate(ips):
        if h.ip in c.address.network:
            if not any(o.mac == h.mac and o.ip == h.ip for o in out[i]):
                out[i].append(h)
            return


def _indexed(spec: Spec, macs: dict[tuple[str, int], str]) -> NicMacs:
    out = NicMacs()
    out.update(macs)
    for gname in sorted(spec.guests):
        for i, nic in enumerate(spec.guests[gname].interfaces):
            if nic.network is not None:
                out.on_network.setdefault(nic.network, []).append((gname, i))
    return out


def nic_bridge(spec: Spec, nic: GuestNic) -> str | None:
    """The host bridge a NIC's port is on: its `bridge:`, or its `mode: bridge`
    network's; None for a network whose bridge libvirt makes (or that is not there)."""
    if nic.bridge is not None:
        return nic.bridge
    net = spec.networks.get(nic.network or "")
    return net.bridge if net is not None and net.mode == "bridge" else None


def nic_vlans(spec: Spec, guest: str, idx: int) -> Vlans | None:
    """The VLANs NIC `idx` of `guest` is on: its own (`vlan:`/`vlans:`), else those of
    the portgroup it names, else those of its network's default portgroup (libvirt's
    rule); None: none (the bridge's PVID, untagged, on a bridge with vlan_filtering)."""
    nic = spec.guests[guest].interfaces[idx]
    own = nic.vlan_set()
    if own is not None:
        return own
    net = spec.networks.get(nic.network or "")
    if net is None or not net.portgroups:
        return None
    if nic.portgroup is not None:
        pg = net.portgroups.get(nic.portgroup)
    else:
        pg = next((p for p in net.portgroups.values() if p.default), None)
    return pg.vlan_set() if pg is not None else None

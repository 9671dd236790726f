"""Checks of guests' NICs: the network each names, addresses, and MACs."""

from __future__ import annotations

from kvmnet.errors import close_matches
from kvmnet.model.derive import ip_config_for, nic_macs
from kvmnet.model.spec import GuestNic, IPConfig, Spec
from kvmnet.spec.checks.network import LIBVIRT_BRIDGED, NO_IP_MODES, ip_blocks
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_


def guests(f: Findings, spec: Spec) -> None:
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
            _addresses(f, spec, path, nic, ips)


def _addresses(f: Findings, spec: Spec, path: Path_, nic: GuestNic,
               ips: dict[object, tuple[str, int]]) -> None:
    """A NIC's reserved ipv4/ipv6: on a network with DHCP, in its subnet, not the
    host's or the network/broadcast address, and given to one NIC only."""
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
        if fam == "ipv6":
            _one_v6_name(f, spec, path, nic, ipc)
        if addr in ips:
            og, oi = ips[addr]
            f.error(path + (fam,), f"{addr} is also given to {og} (NIC {oi + 1}): "
                    "each address once", refs=[("guests", og, "interfaces")])
        else:
            ips[addr] = (str(path[1]), int(path[3]))


def _one_v6_name(f: Findings, spec: Spec, path: Path_, nic: GuestNic, ipc: IPConfig) -> None:
    """A NIC's ipv6 is a DHCPv6 reservation matched by the guest's name (libvirt's IPv6
    <host> has no MAC): one per guest and network, and no `hosts:` entry of that name."""
    gname, idx = str(path[1]), int(path[3])
    others = [j for j, n in enumerate(spec.guests[gname].interfaces)
              if j < idx and n.network == nic.network and n.ipv6 is not None]
    if others:
        f.error(path + ("ipv6",), f"{gname} already has an ipv6 on {nic.network} (NIC "
                f"{others[0] + 1}): a DHCPv6 reservation is matched by the guest's name "
                "(libvirt's IPv6 reservations have no MAC), so one guest gets one per "
                "network; remove this one", refs=[("guests", gname, "interfaces")])
    if any(h.name == gname for h in ipc.hosts):
        f.error(path + ("ipv6",), f"network {nic.network} also reserves an address for the "
                f"name {gname} (hosts:): a DHCPv6 reservation is matched by name; keep one "
                "of them", refs=[("networks", str(nic.network))])


def macs(f: Findings, spec: Spec) -> None:
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
        for p, ipc in ip_blocks(net):
            for i, h in enumerate(ipc.hosts):
                if h.mac:
                    _mac_value(f, ("networks", name) + p + ("hosts", i, "mac"), h.mac)
    _reservations_agree(f, spec)

def _reservations_agree(f: Findings, spec: Spec) -> None:
    """A reservation and a guest NIC with the same MAC must agree on the address."""
    macs = nic_macs(spec)
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            onet = spec.networks.get(nic.network or "")
            if onet is None or nic.ipv4 is None:
                continue
            for p, ipc in ip_blocks(onet):
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

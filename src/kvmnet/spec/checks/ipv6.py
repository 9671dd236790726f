"""Checks of networks' IPv6: how guests get addresses (SLAAC, DHCPv6, both), the /64
SLAAC needs, ULA or global prefixes for what the network does with them, and NAT66.

libvirt's rules these follow (its bridge driver, 9.0 and 11.3 alike): an IPv6 block
without DHCPv6 (no range, no reservation) is advertised for SLAAC only
(dnsmasq `dhcp-range=ADDR,ra-only`); one with DHCPv6 is advertised as "managed" only
(stateful DHCPv6, no SLAAC); only one IPv6 block of a network may have DHCPv6.
`slaac: true` beside DHCPv6 is kvmnet's dnsmasq option (render.dnsmasq).
"""

from __future__ import annotations

import ipaddress

from kvmnet.model.derive import dhcp_hosts, nic_macs
from kvmnet.model.spec import DhcpHost, IPConfig, Network, Spec
from kvmnet.spec.checks.network import LIBVIRT_BRIDGED, ip_blocks
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_

ULA = ipaddress.IPv6Network("fc00::/7")
DOCUMENTATION = ipaddress.IPv6Network("2001:db8::/32")
SLAAC_PREFIX = 64


def ipv6(f: Findings, spec: Spec) -> None:
    macs = nic_macs(spec)
    for name, net in spec.networks.items():
        if net.mode not in LIBVIRT_BRIDGED:
            continue   # (network.py refuses addresses on bridge and macvtap networks)
        hosts = dhcp_hosts(spec, name, macs)
        stateful: list[Path_] = []
        for i, (path, ipc) in enumerate(ip_blocks(net)):
            base: Path_ = ("networks", name, *path)
            block_hosts = hosts.get(i, [])
            _slaac(f, base, ipc, block_hosts)
            if ipc.address.version == 6:
                _prefix_kind(f, name, net, base, ipc)
                _anycast(f, base, ipc)
                if ipc.dhcp or block_hosts:
                    stateful.append(base)
        for extra in stateful[1:]:
            f.error(extra, f"network {name} already has DHCPv6 on its IPv6 block at "
                    f"{'.'.join(str(p) for p in stateful[0][2:])}: libvirt serves DHCPv6 on "
                    "one IPv6 block of a network only; move this block's range and "
                    "reservations there, or give it neither (its guests then use SLAAC)",
                    refs=[stateful[0]])
        _nat66(f, name, net)


def _slaac(f: Findings, base: Path_, ipc: IPConfig, hosts: list[DhcpHost]) -> None:
    """slaac: IPv6 only; false needs DHCPv6; SLAAC needs a /64."""
    iface = ipc.address
    if iface.version == 4:
        if ipc.slaac is not None:
            f.error(base + ("slaac",), "slaac is for IPv6 blocks (router advertisements): "
                    "remove it here; IPv4 guests get their address by DHCP", key=True)
        return
    dhcp6 = bool(ipc.dhcp or hosts)
    if ipc.slaac is False and not dhcp6:
        f.error(base + ("slaac",), "slaac: false, and the block has no DHCPv6 either: "
                "its guests would get no IPv6 address. Write dhcp: START-END (DHCPv6 "
                "only), or remove slaac: false", refs=[base + ("dhcp",), base + ("hosts",)])
    net = iface.network
    if net.prefixlen == SLAAC_PREFIX:
        return
    fix = f"{iface.ip}/{SLAAC_PREFIX}"
    if ipc.slaac is True:
        f.error(base + ("slaac",), f"SLAAC makes addresses in a /{SLAAC_PREFIX} only (the "
                f"guest's 64-bit interface id fills the rest), and {net} is a "
                f"/{net.prefixlen}: write address: {fix}, or remove slaac: true",
                refs=[base + ("address",)])
    elif ipc.slaac is None and not dhcp6:
        f.warn(base + ("address",), f"{net} is a /{net.prefixlen}: guests make no SLAAC "
               f"address in it (SLAAC needs a /{SLAAC_PREFIX}), and the block has no "
               f"DHCPv6 either, so they get no IPv6 address unless set by hand: write "
               f"address: {fix}, or dhcp: START-END for DHCPv6",
               refs=[base + ("dhcp",), base + ("hosts",)])


def _prefix_kind(f: Findings, name: str, net: Network, base: Path_, ipc: IPConfig) -> None:
    """Advice: a ULA prefix is not routed on the internet; a global one needs no NAT."""
    sub = ipc.address.network
    # (examples and labs, in 2001:db8::/32: no advice)
    if not isinstance(sub, ipaddress.IPv6Network) or sub.subnet_of(DOCUMENTATION):
        return
    ula = sub.subnet_of(ULA)
    nat66 = bool(net.mode == "nat" and net.nat and net.nat.ipv6)
    if ula and net.mode in ("route", "open"):
        f.warn(base + ("address",), f"{sub} is a unique local (ULA) prefix, which no "
               f"internet router forwards: guests on {name} reach the host's other "
               "networks over IPv6, but not the internet. For the internet, use a global "
               "prefix your provider routes to this host, or mode: nat with "
               "nat: {ipv6: true}", refs=[("networks", name, "mode")])
    elif not ula and nat66 and sub.is_global:
        f.warn(base + ("address",), f"{sub} is a global prefix, masqueraded by "
               "nat: {ipv6: true}: its guests could have public addresses of their own. "
               "mode: route (with the upstream route `kvmnet render` writes) needs no NAT; "
               "behind NAT66 a ULA prefix (fd00::/8) is the usual choice",
               refs=[("networks", name, "nat", "ipv6")])


def _anycast(f: Findings, base: Path_, ipc: IPConfig) -> None:
    """A DHCPv6 range must not hand out the subnet-router anycast address (the subnet's
    first: every router of the link answers it)."""
    net = ipc.address.network
    for i, r in enumerate(ipc.dhcp):
        if r.start.version == 6 and r.start in net and net.network_address in r:
            f.error(base + ("dhcp", i), f"range {r} includes {net.network_address}, the "
                    f"subnet-router anycast address of {net}: start it at "
                    f"{net.network_address + 2} or later")


def _nat66(f: Findings, name: str, net: Network) -> None:
    if net.mode == "nat" and net.nat and net.nat.ipv6 and not any(
            c.address.version == 6 for c in net.all_ips()):
        f.error(("networks", name, "nat", "ipv6"), f"nat: {{ipv6: true}} masquerades "
                f"{name}'s IPv6, but it has no IPv6 block: add ipv6: {{address: "
                "fd00:1::1/64}, or remove ipv6: true", refs=[("networks", name, "ipv6")])

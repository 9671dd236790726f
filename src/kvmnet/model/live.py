"""What was read from a live host, beside the Spec it maps to.

Plain frozen dataclasses, no I/O: `live.read` fills them, `plan` diffs them
against the wanted Spec, `import` turns them into a Spec.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kvmnet.model.spec import Network
from kvmnet.model.vlan import VlanLive, Vlans

if TYPE_CHECKING:  # start-up: OVN's and the firewall's values load when they are used
    from kvmnet.model.forward import FirewallLive
    from kvmnet.model.overlay import NbState


@dataclass(frozen=True)
class LiveNetwork:
    name: str
    network: Network          # parsed from the persistent (inactive) XML
    managed: bool             # carries kvmnet's metadata mark
    active: bool
    autostart: bool
    persistent: bool
    uuid: str | None = None
    bridge: str | None = None     # the bridge libvirt actually uses (live XML)
    xml: str = ""                 # persistent XML as read
    unmodelled: tuple[str, ...] = ()
    # False when the driver cannot show the persistent config of an active
    # network apart from the running one (libvirt's test driver): a change to
    # it is only visible after a restart.
    split_config: bool = True
    # Why kvmnet cannot model this network ('' when it can). Only ever set for a
    # network without kvmnet's mark: `network` then holds just its mode and bridge.
    problem: str = ""
    # The mark's owner (a spec's `owner:`); None on a managed network: marked by a
    # kvmnet from before owners (a bare <kvmnet:managed/>)
    owner: str | None = None
    # The mark's record of what kvmnet last defined (kvmnet.plan.fields.record); None:
    # none (defined before records, or not by kvmnet): drift cannot be told apart
    record: str | None = None


@dataclass(frozen=True)
class NicRecord:
    """kvmnet's record of one NIC it attached to a domain (the domain's metadata)."""

    mac: str
    owner: str | None = None      # None: recorded by a kvmnet from before owners
    index: int | None = None      # the NIC's place in the guest's `interfaces:` then
    # the VLANs kvmnet sets on its tap where libvirt does not (libvirt 9: the qemu hook
    # reads them here at every start of the guest); None: none
    vlans: Vlans | None = None


@dataclass(frozen=True)
class LiveNic:
    mac: str
    type: str                     # network | bridge | direct | ...
    source: str | None            # network name or bridge name
    model: str | None = None
    target: str | None = None     # tap device of a running guest (vnet0)
    portgroup: str | None = None
    mtu: int | None = None
    xml: str = ""                 # the <interface> element as read (persistent)
    vlans: Vlans | None = None    # its <vlan> (libvirt sets these on the tap itself)
    filterref: str | None = None  # the nwfilter it names (guest firewall)
    filter_params: tuple[tuple[str, str], ...] = ()   # its <parameter>s, sorted
    link_down: bool = False       # <link state='down'/>: the guest sees no carrier


@dataclass(frozen=True)
class LiveDomain:
    name: str
    running: bool
    nics: tuple[LiveNic, ...]             # persistent config
    live_nics: tuple[LiveNic, ...] = ()   # running config (with tap names)
    managed_macs: frozenset[str] = frozenset()   # NICs kvmnet attached (domain metadata)
    records: tuple[NicRecord, ...] = ()          # the same, with owner and index

    def record(self, mac: str) -> NicRecord | None:
        """kvmnet's record of the NIC with this MAC (a bare MAC record: owner None)."""
        for r in self.records:
            if r.mac == mac:
                return r
        return NicRecord(mac) if mac in self.managed_macs else None


@dataclass(frozen=True)
class HostLink:
    name: str
    index: int
    kind: str                     # bridge, veth, ether (''), tun, ...
    master: str | None
    up: bool
    mac: str | None = None
    mtu: int | None = None
    wireless: bool = False
    addresses: tuple[str, ...] = ()       # CIDRs
    perm_mac: str | None = None   # the NIC's own (burnt-in) MAC, whatever it is set to now
    bond_mode: str | None = None  # a bond's mode (active-backup, 802.3ad, balance-xor, ...)
    vlan: tuple[str, int] | None = None   # a VLAN sub-interface's (link, id)
    vlan_filtering: bool | None = None    # a bridge's VLAN filtering (None: not a bridge)
    dynamic: tuple[str, ...] = ()  # those with a lifetime: by SLAAC (or a DHCP client)
    # IPv6 per link (net.ipv6.conf.LINK.*): accept_ra, forwarding, addr_gen_mode
    accept_ra: int | None = None
    forwarding6: bool | None = None
    addr_gen_mode: int | None = None  # 0 eui64, 1 none, 2 stable privacy, 3 random


@dataclass(frozen=True)
class HostRoute:
    dst: str                      # CIDR ('default' -> 0.0.0.0/0)
    dev: str | None
    gateway: str | None = None
    metric: int | None = None
    # who made it (2 the kernel, 9 a router advertisement, ...): not part of what a route
    # is, so not compared
    proto: int | None = field(default=None, compare=False)

    @property
    def net(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.dst, strict=False)


@dataclass(frozen=True, order=True)
class Listener:
    """A socket the host serves on (the kernel's socket table: kvmnet.backend.sockets)."""

    proto: str                    # tcp | udp
    addr: str                     # a local address; 0.0.0.0 or :: for all of a family's
    port: int
    dev: str | None = None        # bound to this device: serves its addresses only
    dual: bool = False            # an IPv6 socket (::) that takes IPv4 too (not V6ONLY)

    def serves(self, addr: str) -> bool:
        """Does a connection to local address `addr` reach this socket?"""
        a = ipaddress.ip_address(addr)
        mine = ipaddress.ip_address(self.addr)
        if mine == a:
            return True
        if not mine.is_unspecified:
            return False
        return mine.version == a.version or (self.dual and a.version == 4)


@dataclass(frozen=True)
class HostState:
    links: dict[str, HostLink] = field(default_factory=dict)
    routes: tuple[HostRoute, ...] = ()
    readable: bool = True          # False against test:/// (no host to look at)
    # the socket table (kvmnet.backend.sockets); None: not read
    listening: tuple[Listener, ...] | None = None
    ssh_sessions: tuple[str, ...] = ()   # local addresses of established SSH sessions
    default_accept_ra: int | None = None  # net.ipv6.conf.default.accept_ra: a new link's


@dataclass(frozen=True)
class LinkDns:
    """What systemd-resolved holds for one link: its DNS servers and domains ('~lab'
    is a routing-only domain)."""

    servers: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamesLive:
    """How the host resolves guests' names (host.resolve_guests): /etc/nsswitch.conf
    (under --root) and libvirt's NSS module; systemd-resolved's links when it runs."""

    nsswitch: str | None = None                # its text; None: no such file
    nss_module: str | None = None              # libnss_libvirt.so.2's path, if installed
    resolved: bool = False                     # systemd-resolved answers on D-Bus
    links: dict[str, LinkDns] = field(default_factory=dict)  # bridge -> resolved's view


@dataclass(frozen=True)
class LiveState:
    uri: str
    networks: dict[str, LiveNetwork]
    domains: dict[str, LiveDomain]
    host: HostState = field(default_factory=HostState)
    is_test: bool = False
    ovn: NbState | None = None    # OVN northbound rows (OVN), read when spec.ovn is set
    firewall: FirewallLive | None = None  # kvmnet's port forwards; local only
    names: NamesLive | None = None        # host.resolve_guests: read when the spec sets it
    # nwfilters by name (guest firewalls); None: the driver has none (test:///)
    nwfilters: dict[str, LiveFilter] | None = None
    vlans: VlanLive | None = None  # read when the spec or a domain has VLAN NICs
    libvirt_version: int | None = None    # getLibVersion(); None: unknown


@dataclass(frozen=True)
class LiveFilter:
    """One nwfilter as read: its XML and whether it carries kvmnet's mark
    (kvmnet.model.firewall.owned)."""

    name: str
    uuid: str
    xml: str
    owned: bool

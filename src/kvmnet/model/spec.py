"""The one model: what a host's networking should be, and what it is.

Frozen pydantic models; the same classes describe the wanted spec (loaded from
YAML, validated in strict mode) and the live state (read from libvirt's XML, validated
in lax mode: "9000", "yes"), so plan is a diff of two values of `Spec`. Field names
are the YAML keys (DESIGN.md); never rename.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kvmnet.model.types import (
    Addr,
    DnsName,
    Duid,
    Iface,
    IfName,
    Mac,
    Name,
    Net,
    Ports,
    Range,
    Text,
)

Mode = Literal["nat", "route", "open", "isolated", "bridge", "macvtap", "overlay"]
MODES: tuple[str, ...] = ("nat", "route", "open", "isolated", "bridge", "macvtap", "overlay")
# hostdev: an SR-IOV VF pool (PCI passthrough, not macvtap); modelled so import round-trips
MacvtapMode = Literal["bridge", "vepa", "private", "passthrough", "hostdev"]
# How libvirt XML writes a prefix: prefix='24', netmask='255.255.255.0', or nothing
# (libvirt then assumes the classful prefix, /64 for IPv6); libvirt keeps the form given.
PrefixForm = Literal["prefix", "netmask", "none"]
Renderer = Literal["auto", "ifupdown", "netplan", "networkmanager", "networkd"]
NicModel = Literal[
    "virtio", "e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet", "vmxnet3", "igb", "usb-net"
]


class Model(BaseModel):
    """Every spec model: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Lease(Model):
    """DHCP lease time: '1h', '30m', '3600' (seconds) or 'infinite'."""

    expiry: int = Field(ge=0, description="0 = infinite")
    unit: Literal["seconds", "minutes", "hours"] = "minutes"

    @model_validator(mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("a lease time is like 1h, 30m, 600s or infinite")
        if isinstance(v, int):
            return {"expiry": v, "unit": "seconds"}
        if isinstance(v, str):
            t = v.strip().lower()
            if t in ("infinite", "0"):
                return {"expiry": 0}
            units = {"s": "seconds", "m": "minutes", "h": "hours"}
            if t[-1:] in units and t[:-1].isascii() and t[:-1].isdigit():
                return {"expiry": int(t[:-1]), "unit": units[t[-1]]}
            if t.isascii() and t.isdigit():
                return {"expiry": int(t), "unit": "seconds"}
            raise ValueError(f"{v!r} is not a lease time: write e.g. 1h, 30m, 600s or infinite")
        return v

    def __str__(self) -> str:
        if self.expiry == 0:
            return "infinite"
        return f"{self.expiry}{self.unit[0]}"


class DhcpRange(Model):
    start: Addr
    end: Addr
    lease_time: Lease | None = None

    @model_validator(mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, str):
            from kvmnet.model.types import parse_range

            r = parse_range(v)
            return {"start": r.start, "end": r.end}
        return v

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        if addr.version != self.start.version:
            return False
        return int(self.start) <= int(addr) <= int(self.end)


class DhcpHost(Model):
    """A static DHCP reservation: MAC (IPv4) or id/name (IPv6) -> address."""

    ip: Addr
    mac: Mac | None = None
    name: DnsName | None = None
    id: Duid | None = None
    lease_time: Lease | None = None


class StaticRoute(Model):
    """A route libvirt adds on the host: `to` via `via` (a guest acting as router)."""

    to: Net
    via: Addr
    metric: int | None = Field(default=None, ge=1)
    xml_prefix: PrefixForm = "prefix"  # how <route> writes the prefix (import keeps it)


class IPConfig(Model):
    address: Iface
    dhcp: list[DhcpRange] = Field(default_factory=list)
    hosts: list[DhcpHost] = Field(default_factory=list)
    lease_time: Lease | None = None
    routes: list[StaticRoute] = Field(default_factory=list)
    tftp: Text | None = None
    bootp: dict[Text, Text] | None = None
    xml_prefix: PrefixForm = "prefix"  # how <ip> writes the prefix (import keeps it)

    @field_validator("dhcp", mode="before")
    @classmethod
    def _one_range(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | dict) else v


class DnsHost(Model):
    ip: Addr
    names: list[DnsName] = Field(min_length=1)


class DnsSrv(Model):
    service: DnsName
    protocol: Literal["tcp", "udp"]
    domain: DnsName | None = None
    target: DnsName | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    priority: int | None = Field(default=None, ge=0, le=65535)
    weight: int | None = Field(default=None, ge=0, le=65535)


class DnsTxt(Model):
    name: DnsName
    value: Text


class DnsForwarder(Model):
    """Upstream DNS server: addr for every name, or only for `domain`; a domain
    without addr is answered locally only. A plain string is an addr."""

    addr: Addr | None = None
    domain: DnsName | None = None

    @model_validator(mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return {"addr": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _something(self) -> DnsForwarder:
        if self.addr is None and self.domain is None:
            raise ValueError("a forwarder needs addr: IP, domain: NAME, or both")
        return self


class Dns(Model):
    enable: bool = True
    forward_plain_names: bool | None = None
    hosts: list[DnsHost] = Field(default_factory=list)
    forwarders: list[DnsForwarder] = Field(default_factory=list)
    srv: list[DnsSrv] = Field(default_factory=list)
    txt: list[DnsTxt] = Field(default_factory=list)


class Nat(Model):
    """Outbound NAT tuning: source address pool and port range."""

    addresses: Range | None = None
    ports: Ports | None = None
    ipv6: bool = False


class PortForward(Model):
    """Reach a guest behind NAT: host_port on the host -> guest:guest_port."""

    proto: Literal["tcp", "udp"]
    host_port: Ports
    guest: Name | None = None
    address: Addr | None = None
    guest_port: Ports | None = None
    listen: Addr | None = None
    sources: list[Net] = Field(default_factory=list)


class OverlayExternal(Model):
    """Where an overlay network's router meets the outside: a provider network
    (`physnet`, named in ovn-bridge-mappings on the gateway chassis)."""

    physnet: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    address: Iface                   # the router's address there, e.g. 203.0.113.10/24
    gateway: Addr | None = None      # next hop of the router's default route
    chassis: list[Text] = Field(min_length=1)   # gateway chassis names, first preferred


class OverlayRouter(Model):
    """An OVN logical router for an overlay network (OVN)."""

    external: OverlayExternal
    snat: bool = True                # guests reach out as external.address


class Network(Model):
    mode: Mode = "nat"
    adopt: bool = False
    autostart: bool = True
    bridge: IfName | None = None
    mac: Mac | None = None
    stp: bool | None = None
    delay: int | None = Field(default=None, ge=0)
    mtu: int | None = Field(default=None, ge=68, le=65535)
    domain: DnsName | None = None
    domain_local: bool | None = None
    uplink: IfName | None = None
    devices: list[IfName] = Field(default_factory=list)
    macvtap_mode: MacvtapMode | None = None
    nat: Nat | None = None
    allow_guest_ipv6: bool | None = None
    ipv4: IPConfig | None = None
    ipv6: IPConfig | None = None
    more_ips: list[IPConfig] = Field(default_factory=list)
    dns: Dns | None = None
    forwards: list[PortForward] = Field(default_factory=list)
    router: OverlayRouter | None = None   # overlay only: OVN logical router (OVN)
    hosts: list[Name] | None = None       # the hypervisors it lives on; None: all (multihost)
    # libvirt XML kvmnet does not model, kept verbatim for round trips:
    # parent path ('' = <network>, 'forward', 'dns', 'ip[0]') -> XML strings;
    # a key ending in '@' holds attributes instead ('bridge@': ['zone="x"']).
    xml_extra: dict[str, list[str]] = Field(default_factory=dict)

    def all_ips(self) -> list[IPConfig]:
        return [c for c in (self.ipv4, self.ipv6) if c is not None] + list(self.more_ips)


class HostBridge(Model):
    ports: list[IfName] = Field(default_factory=list)
    stp: bool = False
    forward_delay: int | None = Field(default=None, ge=0, le=30)
    address: list[Iface] = Field(default_factory=list)
    gateway: Addr | None = None
    metric: int | None = Field(default=None, ge=0)
    dhcp: bool = False
    mtu: int | None = Field(default=None, ge=68, le=65535)
    dns: list[Addr] = Field(default_factory=list)
    check: Addr | None = None

    @field_validator("address", mode="before")
    @classmethod
    def _one_address(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Host(Model):
    renderer: Renderer = "auto"
    bridges: dict[IfName, HostBridge] = Field(default_factory=dict)


class GuestNic(Model):
    network: Name | None = None
    bridge: IfName | None = None
    mac: Mac | None = None
    model: NicModel | None = None
    ipv4: Addr | None = None
    ipv6: Addr | None = None
    portgroup: Text | None = None
    mtu: int | None = Field(default=None, ge=68, le=65535)

    @model_validator(mode="after")
    def _one_target(self) -> GuestNic:
        if (self.network is None) == (self.bridge is None):
            raise ValueError(
                "a guest NIC needs exactly one of network: NAME (a libvirt network) "
                "or bridge: NAME (a host bridge)"
            )
        return self


class Guest(Model):
    interfaces: list[GuestNic] = Field(default_factory=list)
    hosts: list[Name] | None = None   # pinned to these hypervisors; None: where it is defined


# -- OVN (overlay networks; OVN) ---------------------------------------
_NB_RE = re.compile(r"^(unix:/\S+|(tcp|ssl):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5})\Z")


class Ovn(Model):
    """Where OVN's northbound database is; overlay networks are written there.
    ssl: remotes also need the three files (ovn-nbctl's --private-key and friends)."""

    northbound: str
    private_key: Text | None = None
    certificate: Text | None = None
    ca_cert: Text | None = None

    @field_validator("northbound")
    @classmethod
    def _remote(cls, v: str) -> str:
        if not _NB_RE.match(v):
            raise ValueError(f"{v!r} is not an OVSDB remote: write unix:/PATH, "
                             "tcp:HOST:PORT or ssl:HOST:PORT (e.g. tcp:10.0.0.5:6641)")
        return v


class HostEntry(Model):
    """One hypervisor of a many-host spec (kvmnet.service.multihost): its libvirt URI, and the
    network namespace its host links live in (labs; local URIs only)."""

    uri: Text
    netns: Text | None = None


class Spec(Model):
    host: Host = Field(default_factory=Host)
    networks: dict[Name, Network] = Field(default_factory=dict)
    guests: dict[Name, Guest] = Field(default_factory=dict)
    ovn: Ovn | None = None  # OVN: the northbound database of overlay networks
    hosts: dict[Name, HostEntry] = Field(default_factory=dict)  # kvmnet.service.multihost

    def has_forwards(self) -> bool:
        """Does any network ask for port forwards?"""
        return any(net.forwards for net in self.networks.values())

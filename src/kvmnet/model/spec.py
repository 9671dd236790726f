"""The one model: what a host's networking should be, and what it is.

Frozen pydantic models; the same classes describe the wanted spec (loaded from
YAML, validated in strict mode) and the live state (read from libvirt's XML, validated
in lax mode: "9000", "yes"), so plan is a diff of two values of `Spec`. Field names
are the YAML keys; never rename. A network's address blocks, DHCP and DNS are in
model.ipconfig (re-exported here).

Each field's description is what an editor shows for the key (the JSON Schema,
`kvmnet schema`) and what docs/SPEC.md lists: write it for the person writing the YAML.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from kvmnet.model.base import Model as Model
from kvmnet.model.base import exactly_one
from kvmnet.model.firewall import FirewallRule as FirewallRule
from kvmnet.model.firewall import FirewallSet as FirewallSet
from kvmnet.model.hostlink import HostBond as HostBond
from kvmnet.model.hostlink import HostBridge as HostBridge
from kvmnet.model.hostlink import HostVlan as HostVlan
from kvmnet.model.ipconfig import DhcpHost as DhcpHost
from kvmnet.model.ipconfig import DhcpRange as DhcpRange
from kvmnet.model.ipconfig import Dns as Dns
from kvmnet.model.ipconfig import DnsCname as DnsCname
from kvmnet.model.ipconfig import DnsForwarder as DnsForwarder
from kvmnet.model.ipconfig import DnsHost as DnsHost
from kvmnet.model.ipconfig import DnsSrv as DnsSrv
from kvmnet.model.ipconfig import DnsTxt as DnsTxt
from kvmnet.model.ipconfig import DnsWildcard as DnsWildcard
from kvmnet.model.ipconfig import IPConfig as IPConfig
from kvmnet.model.ipconfig import Lease as Lease
from kvmnet.model.ipconfig import PrefixForm as PrefixForm
from kvmnet.model.ipconfig import StaticRoute as StaticRoute
from kvmnet.model.types import Addr, DnsName, Iface, IfName, Mac, Name, Net, Ports, Range, Text
from kvmnet.model.value_schema import END, OVSDB_REMOTE, OVSDB_REMOTE_SCHEMA
from kvmnet.model.vlan import Portgroup as Portgroup
from kvmnet.model.vlan import VlanId, Vlans

Mode = Literal["nat", "route", "open", "isolated", "bridge", "macvtap", "overlay"]
MODES: tuple[str, ...] = ("nat", "route", "open", "isolated", "bridge", "macvtap", "overlay")
# hostdev: an SR-IOV VF pool (PCI passthrough, not macvtap); modelled so import round-trips
MacvtapMode = Literal["bridge", "vepa", "private", "passthrough", "hostdev"]
Renderer = Literal["auto", "ifupdown", "netplan", "networkmanager", "networkd"]
NicModel = Literal[
    "virtio", "e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet", "vmxnet3", "igb", "usb-net"
]


class Nat(Model):
    """Outbound NAT tuning: the addresses and ports masquerading uses."""

    addresses: Range | None = Field(None, description="Source addresses to masquerade to "
                                    "(host addresses): START-END.",
                                    examples=["203.0.113.10-203.0.113.12"])
    ports: Ports | None = Field(None, description="Source ports masquerading uses.",
                                examples=["1024-65535"])
    ipv6: bool = Field(False, description="Masquerade IPv6 too.")


class PortForward(Model):
    """Reach a guest behind NAT: `host_port` on the host's addresses -> the guest."""

    proto: Literal["tcp", "udp"] = Field(description="The protocol.")
    host_port: Ports = Field(description="The host's port, or a range.", examples=[2222])
    guest: Name | None = Field(None, description="The guest to reach: its NIC on this "
                               "network with an `ipv4:` (or set `address:` instead).",
                               examples=["web1"])
    address: Addr | None = Field(None, description="The address to reach, instead of "
                                 "`guest:`.", examples=["192.168.122.10"])
    guest_port: Ports | None = Field(None, description="The port on the guest: one, or a "
                                     "range as long as `host_port`'s; default: host_port.",
                                     examples=[22])
    listen: Addr | None = Field(None, description="Only connections to this host address; "
                                "default: all of the host's addresses.",
                                examples=["192.168.1.1"])
    sources: list[Net] = Field(default_factory=list, description="Only connections from "
                               "these subnets; default: from anywhere.",
                               examples=[["192.168.1.0/24"]])


class OverlayExternal(Model):
    """Where an overlay network's router meets the outside: a provider network."""

    physnet: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", examples=["physnet1"],
                         # (the same for Python's re, which jsonschema uses: see END)
                         json_schema_extra={"pattern": r"^[A-Za-z0-9_.-]+" + END},
                         description="The provider network's name, as the gateway "
                                     "chassis' ovn-bridge-mappings name it.")
    address: Iface = Field(description="The router's address there, with the prefix.",
                           examples=["203.0.113.10/24"])
    gateway: Addr | None = Field(None, description="The next hop of the router's default "
                                 "route.", examples=["203.0.113.1"])
    chassis: list[Text] = Field(min_length=1, description="Gateway chassis names, the "
                                "first preferred.", examples=[["hv1", "hv2"]])


class OverlayRouter(Model):
    """An OVN logical router for an overlay network."""

    external: OverlayExternal = Field(description="Its port to the outside.")
    snat: bool = Field(True, description="Guests reach out as `external.address` (SNAT).")


class Network(Model):
    """A libvirt network (or an OVN overlay network) and the guests' view of it."""

    mode: Mode = Field("nat", description="nat: masquerade to the outside (libvirt's "
                       "default); route: a subnet of its own that the LAN router routes to "
                       "the host; open: route without firewall rules; isolated: guests and "
                       "host only; bridge: an existing host bridge; macvtap: guests directly "
                       "on host NICs; overlay: across hypervisors, through OVN.")
    adopt: bool = Field(False, description="Take over an existing network of this name "
                        "that kvmnet did not make (e.g. libvirt's default), or that another "
                        "spec's owner holds (it then moves to this spec's owner).")
    autostart: bool = Field(True, description="Start the network when libvirt starts.")
    bridge: IfName | None = Field(None, description="The bridge: the one libvirt makes "
                                  "(nat, route, open, isolated) or the host bridge to use "
                                  "(mode bridge).", examples=["virbr1"])
    mac: Mac | None = Field(None, description="The MAC of the bridge libvirt makes.")
    stp: bool | None = Field(None, description="Spanning tree on the bridge libvirt makes. "
                             "Not set: off on a network kvmnet creates (its ports are guests' "
                             "taps: no loop to break, and a restart of the network then "
                             "costs running guests under a second, not 4-5 s); an existing "
                             "network keeps what its bridge has (libvirt's default: on). "
                             "Say true if a loop can reach the bridge: a guest that bridges "
                             "two of its NICs, or a host link added to it by hand.")
    delay: int | None = Field(None, ge=0, description="Forward delay of that bridge, in "
                              "seconds.", examples=[0])
    mtu: int | None = Field(None, ge=68, le=65535, description="MTU of the network's "
                            "bridge and guests' NICs.", examples=[9000])
    domain: DnsName | None = Field(None, description="The DNS domain of the network; "
                                   "guests' names resolve in it.", examples=["lab.example"])
    domain_local: bool | None = Field(None, description="Answer names in `domain` only "
                                      "from this network's own DNS, never upstream.")
    uplink: IfName | None = Field(None, description="The host interface traffic leaves by "
                                  "(nat, route, open); default: any, by the host's routes.",
                                  examples=["enp2s0"])
    devices: list[IfName] = Field(default_factory=list, description="Host NICs a macvtap "
                                  "network puts guests on.", examples=[["enp3s0"]])
    macvtap_mode: MacvtapMode | None = Field(
        None, description="macvtap: bridge (the default; guests reach each other), vepa, "
                          "private, passthrough (one guest per NIC); hostdev: an SR-IOV pool.")
    nat: Nat | None = Field(None, description="Outbound NAT tuning (mode nat).")
    allow_guest_ipv6: bool | None = Field(None, description="Let guests talk IPv6 among "
                                          "themselves on a network without an IPv6 address.")
    ipv4: IPConfig | None = Field(None, description="The IPv4 block: the host's address, "
                                  "DHCP, reservations, routes.")
    ipv6: IPConfig | None = Field(None, description="The IPv6 block, the same.")
    more_ips: list[IPConfig] = Field(default_factory=list, description="Further address "
                                     "blocks (libvirt allows several of each family).")
    dns: Dns | None = Field(None, description="DNS the network serves its guests.")
    forwards: list[PortForward] = Field(default_factory=list, description="Port forwards "
                                        "to guests (mode nat).")
    router: OverlayRouter | None = Field(None, description="Overlay only: an OVN router "
                                         "to the outside.")
    firewalls: list[Name] = Field(default_factory=list, description="Guest firewall "
                                  "sets (`firewalls:`) every NIC on it uses unless the "
                                  "NIC names its own.", examples=[["ssh-only"]])
    antispoof: bool = Field(False, description="Bind every NIC on it to its MAC and "
                            "reserved ipv4 (libvirt's clean-traffic filter) unless the "
                            "NIC says otherwise.")
    hosts: list[Name] | None = Field(None, description="Several hypervisors: those it is "
                                     "defined on; default: all of them.", examples=[["hv1"]])
    portgroups: dict[Name, Portgroup] = Field(default_factory=dict, description="libvirt "
                                              "portgroups by name (mode bridge over a "
                                              "bridge with vlan_filtering): the VLANs of "
                                              "the NICs that name one.")
    # libvirt XML kvmnet does not model, kept verbatim for round trips:
    # parent path ('' = <network>, 'forward', 'dns', 'ip[0]') -> XML strings;
    # a key ending in '@' holds attributes instead ('bridge@': ['zone="x"']).
    xml_extra: dict[str, list[str]] = Field(
        default_factory=dict, description="libvirt XML kvmnet does not model, kept as is "
        "(`kvmnet import` writes it): parent path ('' for <network>, 'forward', 'ip[0]') "
        "-> XML elements; a key ending in '@' holds attributes.",
        examples=[{"bridge@": ['zone="trusted"']}])

    def all_ips(self) -> list[IPConfig]:
        return [c for c in (self.ipv4, self.ipv6) if c is not None] + list(self.more_ips)


class Host(Model):
    """The host's own networking."""

    renderer: Renderer = Field("auto", description="Which config the host bridges are "
                               "written for; auto: what the host uses (netplan, "
                               "NetworkManager, systemd-networkd or ifupdown).")
    bridges: dict[IfName, HostBridge] = Field(default_factory=dict, description="Host "
                                              "bridges by name.")
    bonds: dict[IfName, HostBond] = Field(default_factory=dict, description="Bonds of "
                                          "host NICs by name, each a port of a bridge or "
                                          "the link of VLANs.")
    vlans: dict[IfName, HostVlan] = Field(default_factory=dict, description="VLAN "
                                          "sub-interfaces by name (e.g. bond0.100), each "
                                          "a port of a bridge.")
    resolve_guests: bool = Field(False, description="Make guests' names resolve on the "
                                 "host itself (`getent hosts web1`, `ping web1.lab`): "
                                 "libvirt's NSS module in /etc/nsswitch.conf and, where "
                                 "systemd-resolved runs, each network's DNS and domain on "
                                 "its bridge.")


class GuestNic(Model):
    """A guest's NIC: on a libvirt network, or on a host bridge."""

    model_config = ConfigDict(json_schema_extra=exactly_one("network", "bridge"))

    network: Name | None = Field(None, description="The libvirt network it is on (or "
                                 "`bridge:`).", examples=["default"])
    bridge: IfName | None = Field(None, description="The host bridge it is on (or "
                                  "`network:`).", examples=["br0"])
    mac: Mac | None = Field(None, description="Its MAC; default: 52:54:00 and a hash of "
                            "guest and NIC index, the same on every run.")
    model: NicModel | None = Field(None, description="The NIC model; for NICs kvmnet "
                                   "attaches: virtio.")
    ipv4: Addr | None = Field(None, description="Its IPv4 address: a DHCP reservation on "
                              "the network.", examples=["192.168.122.10"])
    ipv6: Addr | None = Field(None, description="Its IPv6 address on the network.",
                              examples=["fd00::10"])
    portgroup: Text | None = Field(None, description="The network's portgroup it uses.",
                                   examples=["web"])
    mtu: int | None = Field(None, ge=68, le=65535, description="The NIC's MTU.",
                            examples=[9000])
    firewalls: list[Name] | None = Field(None, description="Guest firewall sets "
                                         "(`firewalls:`) for this NIC, instead of its "
                                         "network's; [] for none.", examples=[["web"]])
    antispoof: bool | None = Field(None, description="Bind the NIC to its MAC and its "
                                   "ipv4 reservation: it cannot send as another address "
                                   "(libvirt's clean-traffic filter; IPv4 and ARP only); "
                                   "default: its network's antispoof.")
    vlan: VlanId | None = Field(None, description="Access port: the NIC is on this VLAN "
                                "of a bridge with vlan_filtering, untagged.", examples=[100])
    vlans: list[VlanId] = Field(default_factory=list, description="Trunk port: these "
                                "VLANs reach the NIC tagged (instead of `vlan:`).",
                                examples=[[100, 200]])
    native: VlanId | None = Field(None, description="Trunk port: the one of `vlans` that "
                                  "reaches the NIC untagged.", examples=[100])

    def vlan_set(self) -> Vlans | None:
        """The VLANs the NIC itself names (not its portgroup's); None: none."""
        return Vlans.of(self.vlan, self.vlans, self.native)

    @model_validator(mode="after")
    def _one_target(self) -> GuestNic:
        if (self.network is None) == (self.bridge is None):
            raise ValueError(
                "a guest NIC needs exactly one of network: NAME (a libvirt network) "
                "or bridge: NAME (a host bridge)"
            )
        return self


class Guest(Model):
    """A guest (libvirt domain) whose NICs kvmnet manages; kvmnet never creates, starts or
    deletes guests."""

    interfaces: list[GuestNic] = Field(default_factory=list, description="Its NICs, in "
                                       "order (a NIC's index is its place here).")
    hosts: list[Name] | None = Field(None, description="Several hypervisors: those it runs "
                                     "on; default: where it is defined.", examples=[["hv2"]])
    adopt: bool = Field(False, description="Take over the NICs of this guest that another "
                        "spec's owner attached and this spec lists (they move to this "
                        "spec's owner).")


_NB_RE = re.compile(OVSDB_REMOTE)


class Ovn(Model):
    """Where OVN's northbound database is; overlay networks are written there.
    ssl: remotes also need the three files (ovn-nbctl's --private-key and friends)."""

    northbound: Annotated[str, WithJsonSchema(OVSDB_REMOTE_SCHEMA)] = Field(
        description="The northbound database.", examples=["tcp:10.0.0.5:6641"])
    private_key: Text | None = Field(None, description="ssl: this client's private key.",
                                     examples=["/etc/ovn/key.pem"])
    certificate: Text | None = Field(None, description="ssl: this client's certificate.",
                                     examples=["/etc/ovn/cert.pem"])
    ca_cert: Text | None = Field(None, description="ssl: the CA certificate that signed "
                                 "the database's.", examples=["/etc/ovn/cacert.pem"])

    @field_validator("northbound")
    @classmethod
    def _remote(cls, v: str) -> str:
        if not _NB_RE.match(v):
            raise ValueError(f"{v!r} is not an OVSDB remote: write unix:/PATH, "
                             "tcp:HOST:PORT or ssl:HOST:PORT (e.g. tcp:10.0.0.5:6641)")
        return v


class HostEntry(Model):
    """One hypervisor of a spec for several: its libvirt URI, and the network namespace
    its host links live in (labs; local URIs only)."""

    uri: Text = Field(description="Its libvirt URI: qemu:///system, qemu+unix, qemu+ssh, "
                      "qemu+tls, qemu+tcp or test:///default, with no parameter that names "
                      "a program or a file (`kvmnet validate` checks it).",
                      examples=["qemu+ssh://root@hv1/system"])
    netns: Text | None = Field(None, description="The network namespace of its host links "
                               "(labs; local URIs only).", examples=["hv1"])


class Spec(Model):
    """A kvmnet spec: host bridges, libvirt networks and guests' NICs, for one host or
    several."""

    host: Host = Field(default_factory=Host, description="The host's own networking: "
                       "host bridges.")
    networks: dict[Name, Network] = Field(default_factory=dict, description="libvirt "
                                          "networks by name.")
    guests: dict[Name, Guest] = Field(default_factory=dict, description="Guests by name, "
                                      "whose NICs kvmnet manages.")
    ovn: Ovn | None = Field(None, description="OVN's northbound database, for overlay "
                            "networks.")
    hosts: dict[Name, HostEntry] = Field(default_factory=dict, description="Several "
                                         "hypervisors by name: plan and apply run on each.")
    firewalls: dict[Name, FirewallSet] = Field(default_factory=dict, description="Guest "
                                               "firewall rule sets by name (libvirt "
                                               "nwfilter); NICs and networks name them.")

    def nic_firewall(self, guest: str, idx: int) -> tuple[tuple[str, ...], bool]:
        """The sets and anti-spoofing NIC `idx` of `guest` uses (its own, else its
        network's)."""
        nic = self.guests[guest].interfaces[idx]
        net = self.networks.get(nic.network) if nic.network else None
        sets = nic.firewalls if nic.firewalls is not None else (net.firewalls if net else [])
        spoof = nic.antispoof if nic.antispoof is not None else bool(net and net.antispoof)
        return tuple(sets), spoof

    def has_firewalls(self) -> bool:
        """Does anything ask for guest firewalls (sets, or anti-spoofing alone)?"""
        return bool(self.firewalls) or any(n.firewalls or n.antispoof
                                           for n in self.networks.values()) or any(
            nic.firewalls or nic.antispoof for g in self.guests.values()
            for nic in g.interfaces)

    owner: Text | None = Field(
        None, max_length=1024, description="Who owns what this spec makes: kvmnet records "
        "it on every network and guest NIC it makes, and changes or removes only what this "
        "owner holds (others' are left alone; `adopt` moves one over). Default: the spec "
        "file's absolute path, so two files never share objects unless they say the same "
        "owner: write one when the file may move or be renamed.", examples=["web-team"])

    def has_forwards(self) -> bool:
        """Does any network ask for port forwards?"""
        return any(net.forwards for net in self.networks.values())

"""The host's own links: its bridges (`host.bridges`), and below them bonds
(`host.bonds`) and VLAN sub-interfaces (`host.vlans`). model.spec's Host holds them
(and re-exports them); field names are the YAML keys (never rename)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from kvmnet.model.base import Model, one_or_list
from kvmnet.model.types import Addr, Iface, IfName, Mac
from kvmnet.model.vlan import VlanId

BondMode = Literal["active-backup", "802.3ad", "balance-xor"]
BOND_MODES: tuple[str, ...] = ("active-backup", "802.3ad", "balance-xor")
LacpRate = Literal["slow", "fast"]
XmitHashPolicy = Literal["layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4"]
XMIT_HASH_POLICIES: tuple[str, ...] = ("layer2", "layer2+3", "layer3+4", "encap2+3",
                                       "encap3+4")


class HostBond(Model):
    """A bond of host NICs (Linux bonding): one link over several, for failover or
    more bandwidth. Put it in a bridge's `ports:` (or make VLANs on it); the NICs'
    addresses move to that bridge."""

    ports: list[IfName] = Field(description="The NICs it bonds; each in no bridge and no "
                                "other bond.", examples=[["eno1", "eno2"]])
    mode: BondMode = Field("active-backup", description="active-backup: one NIC carries "
                           "the traffic, another takes over when it fails (no switch "
                           "support needed); 802.3ad: LACP, every NIC at once (the switch "
                           "must form a LACP group); balance-xor: every NIC at once by a "
                           "hash (a static group on the switch).")
    miimon: int = Field(100, ge=0, le=60000, description="How often the NICs' links are "
                        "checked, in ms (0: never: a failed NIC is not noticed).",
                        examples=[100])
    lacp_rate: LacpRate | None = Field(None, description="802.3ad only: how often the "
                                       "switch is asked for LACP frames (slow: 30 s, fast: "
                                       "1 s); default: the kernel's (slow).",
                                       examples=["fast"])
    xmit_hash_policy: XmitHashPolicy | None = Field(
        None, description="802.3ad and balance-xor: what picks the NIC for a flow; "
        "default: the kernel's (layer2).", examples=["layer3+4"])
    primary: IfName | None = Field(None, description="active-backup only: the NIC that "
                                   "carries the traffic whenever its link is up; one of "
                                   "ports.", examples=["eno1"])


class HostVlan(Model):
    """A VLAN sub-interface: the frames of one VLAN of a link (a NIC or a bond),
    untagged; put it in a bridge's `ports:` to give guests that VLAN (the classic
    alternative to a bridge with vlan_filtering)."""

    link: IfName = Field(description="The link that carries the VLAN tagged: a NIC or a "
                         "bond of host.bonds.", examples=["bond0"])
    id: int = Field(ge=1, le=4094, description="The VLAN id, 1-4094.", examples=[100])


class HostBridge(Model):
    """A bridge on the host itself (e.g. for mode bridge networks), with the host's own
    address moved onto it; apply keeps SSH alive and rolls back what breaks it."""

    ports: list[IfName] = Field(default_factory=list, description="NICs enslaved to it; "
                                "their addresses and routes move to the bridge.",
                                examples=[["enp2s0"]])
    stp: bool = Field(False, description="Spanning tree protocol.")
    forward_delay: int | None = Field(None, ge=0, le=30, description="STP forward delay in "
                                      "seconds.", examples=[2])
    address: list[Iface] = Field(default_factory=list, json_schema_extra=one_or_list,
                                 description="The host's address(es) on it, with prefix: "
                                 "one, or a list.", examples=["192.168.1.1/24"])
    gateway: Addr | None = Field(None, description="The IPv4 default gateway through it "
                                 "(a bridge without IPv4 may give its IPv6 one here; with "
                                 "both families, the IPv6 one is `gateway6:`).",
                                 examples=["192.168.1.254"])
    gateway6: Addr | None = Field(None, description="The IPv6 default gateway through it: "
                                  "the LAN router, often by its link-local address, which "
                                  "is reached on this bridge (no `%` scope).",
                                  examples=["fe80::1"])
    metric: int | None = Field(None, ge=0, description="Metric of the default route(s) "
                               "through it (IPv4 and IPv6).", examples=[100])
    dhcp: bool = Field(False, description="Get the IPv4 address by DHCP.")
    slaac: bool | None = Field(None, description="true: take the LAN router's IPv6 "
                               "advertisements: an address by SLAAC (the one the port had: "
                               "the bridge takes the port's MAC, EUI-64) and the IPv6 "
                               "default route; false: ignore them (IPv6 only from `address:` "
                               "and `gateway6:`); unset: the host's default.")
    mtu: int | None = Field(None, ge=68, le=65535, description="The bridge's MTU.",
                            examples=[9000])
    dns: list[Addr] = Field(default_factory=list, description="DNS servers for the host.",
                            examples=[["192.168.1.254"]])
    check: Addr | None = Field(None, description="The address apply pings after the "
                               "change to keep it; default: the gateway.",
                               examples=["192.168.1.10"])
    mac: Mac | None = Field(None, description="The bridge's MAC, pinned in the config files "
                            "so it is the same after a reboot (a host addressed by DHCP "
                            "keeps its lease). Default: apply pins the first port's "
                            "permanent MAC, read from the host; `kvmnet render` pins only "
                            "a MAC written here.", examples=["52:54:00:12:34:56"])
    vlan_filtering: bool = Field(False, description="VLAN-aware: the bridge switches by "
                                 "VLAN (802.1Q), like a switch; guests' NICs on it take "
                                 "`vlan:` or `vlans:`.")
    pvid: VlanId = Field(1, description="vlan_filtering: the VLAN of untagged frames on "
                         "its ports (the uplink's native VLAN), 1-4094.", examples=[1])
    vlans: list[VlanId] = Field(default_factory=list, description="vlan_filtering: the "
                                "VLANs its ports carry tagged (the uplink's trunk); a "
                                "guest NIC can only be on one of these or on `pvid`.",
                                examples=[[100, 200]])

    @field_validator("address", mode="before")
    @classmethod
    def _one_address(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("gateway6")
    @classmethod
    def _v6_gateway(cls, v: Addr | None) -> Addr | None:
        if v is not None and v.version != 6:
            raise ValueError(f"gateway6 is the IPv6 default gateway, and {v} is IPv4: write "
                             f"it as gateway: {v}")
        return v

    def gateway_for(self, version: int) -> Addr | None:
        """The default gateway of one IP version (gateway6, else an IPv6 gateway:), or
        None."""
        if version == 6 and self.gateway6 is not None:
            return self.gateway6
        gw = self.gateway
        return gw if gw is not None and gw.version == version else None

"""The host's own links below its bridges: bonds (`host.bonds`) and VLAN sub-interfaces
(`host.vlans`). model.spec's Host holds them beside its bridges; field names are the
YAML keys (never rename)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kvmnet.model.base import Model
from kvmnet.model.types import IfName

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

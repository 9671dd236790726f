"""VLANs (802.1Q) on VLAN-aware Linux bridges: the ids, a network's portgroups, and the
VLANs one guest NIC ends up on.

A guest NIC on a bridge with `vlan_filtering` is an access port (`vlan: 100`: its frames
untagged, on VLAN 100 only) or a trunk (`vlans: [100, 200]`: tagged, with an optional
`native:` VLAN that goes untagged). A NIC on a `mode: bridge` network may take its VLANs
from one of the network's `portgroups` instead (libvirt's own portgroups). What a NIC
carries is a `Vlans` value: the same for the spec, for libvirt's `<vlan>` XML, for the
bridge port's VLAN table read from the kernel, and for the libvirt qemu hook's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from kvmnet.model.base import Model

VLAN_MIN, VLAN_MAX = 1, 4094
VlanId = Annotated[int, Field(ge=VLAN_MIN, le=VLAN_MAX)]


def vlan_ok(v: object) -> bool:
    """Is v a VLAN id (1-4094, an int, not a bool)? For values that come from outside the
    spec: libvirt's XML, kvmnet's domain metadata, the hook's stdin."""
    return type(v) is int and VLAN_MIN <= v <= VLAN_MAX


PortVlan = tuple[int, bool, bool]   # (vid, pvid, untagged): one entry of a port's table


def parse_id(text: str) -> int:
    """A VLAN id written as text: digits only, 1-4094 (ValueError otherwise)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 4):
        raise ValueError(f"not a VLAN id: {text[:20]!r}")
    v = int(text)
    if not vlan_ok(v):
        raise ValueError(f"VLAN id {v} is outside 1-4094")
    return v


def entries_text(entries: frozenset[PortVlan] | None) -> str:
    """A port's VLAN table as plan shows it: '100 (pvid, untagged), 200'."""
    if not entries:
        return "no VLAN"
    return ", ".join(f"{v}" + (" (" + ", ".join(w for w, on in (("pvid", p), ("untagged", u))
                                              if on) + ")" if p or u else "")
                     for v, p, u in sorted(entries))


@dataclass(frozen=True)
class VlanLive:
    """What plan needs to know of VLANs on the live host: whether libvirt sets them
    itself (`native`: libvirt 11 and later: `<vlan>` on a Linux bridge's port), each
    bridge's vlan_filtering and default PVID, the VLAN table of each guest tap, and
    kvmnet's qemu hook (ok / stale / None: libvirt 9, where kvmnet sets them)."""

    native: bool = False
    bridges: dict[str, tuple[bool, int]] = field(default_factory=dict)
    ports: dict[str, frozenset[PortVlan]] = field(default_factory=dict)
    hook: str | None = None
    readable: bool = True           # False: no host to look at (test:///, remote)


@dataclass(frozen=True, order=True)
class Vlans:
    """The VLANs of one bridge port: `tagged` ids, and `untagged`: the one VLAN whose
    frames go without a tag (the port's PVID), or None. An access port is
    Vlans((), 100); a trunk Vlans((100, 200), None), or with a native VLAN
    Vlans((200,), 100)."""

    tagged: tuple[int, ...] = ()
    untagged: int | None = None

    def __post_init__(self) -> None:
        ids = (*self.tagged, *(() if self.untagged is None else (self.untagged,)))
        if not all(vlan_ok(v) for v in ids):
            raise ValueError(f"VLAN ids are whole numbers 1-4094, got {ids!r}")
        if len(set(ids)) != len(ids) or list(self.tagged) != sorted(self.tagged):
            raise ValueError(f"VLAN ids once each, tagged ones sorted: got {ids!r}")

    @property
    def ids(self) -> frozenset[int]:
        return frozenset(self.tagged) | ({self.untagged} if self.untagged else set())

    @property
    def trunk(self) -> bool:
        return bool(self.tagged)

    def text(self) -> str:
        """As plan shows it: 'access 100', 'trunk 100,200 native 100'."""
        if not self.tagged:
            return f"access {self.untagged}" if self.untagged else "none"
        ids = sorted(self.ids)
        native = f" native {self.untagged}" if self.untagged else ""
        return "trunk " + ",".join(map(str, ids)) + native

    def entries(self) -> frozenset[PortVlan]:
        """As a bridge port's VLAN table holds them: (vid, pvid, untagged)."""
        out = {(v, False, False) for v in self.tagged}
        if self.untagged is not None:
            out.add((self.untagged, True, True))
        return frozenset(out)

    def attrs(self) -> dict[str, str]:
        """As kvmnet's record of a NIC keeps them (domain metadata): tagged="100,200"
        untagged="100"."""
        out = {"tagged": ",".join(map(str, self.tagged))} if self.tagged else {}
        if self.untagged is not None:
            out["untagged"] = str(self.untagged)
        return out

    @classmethod
    def from_attrs(cls, tagged: str | None, untagged: str | None) -> Vlans | None:
        """The record's attributes back (None when neither is there); ValueError on
        anything that is not VLAN ids (the record is read by the hook too)."""
        if not tagged and not untagged:
            return None
        return cls(tuple(parse_id(t) for t in tagged.split(",")) if tagged else (),
                   parse_id(untagged) if untagged else None)

    @classmethod
    def of(cls, vlan: int | None, vlans: list[int] | tuple[int, ...],
           native: int | None) -> Vlans | None:
        """From the spec's keys (checked: vlan and vlans exclusive, native in vlans);
        None when none is set."""
        if vlan is not None:
            return cls((), vlan)
        if vlans:
            return cls(tuple(sorted(set(vlans) - {native} if native else set(vlans))),
                       native)
        return None


class Portgroup(Model):
    """A libvirt portgroup of a network: the VLANs of the NICs that name it (or of every
    NIC on the network that names none, for the default one)."""

    vlan: VlanId | None = Field(None, description="Access: its NICs are on this VLAN, "
                                "untagged (or set `vlans:`).", examples=[100])
    vlans: list[VlanId] = Field(default_factory=list, description="Trunk: its NICs get "
                                "these VLANs, tagged (or set `vlan:`).",
                                examples=[[100, 200]])
    native: VlanId | None = Field(None, description="Trunk: the one of `vlans` that goes "
                                  "untagged.", examples=[100])
    default: bool = Field(False, description="NICs on the network that name no portgroup "
                          "(and no VLAN of their own) use this one; one per network.")

    def vlan_set(self) -> Vlans | None:
        return Vlans.of(self.vlan, self.vlans, self.native)

"""Pure parsing of the kernel's bridge VLAN dumps (pyroute2 messages): each bridge's
vlan_filtering and default PVID, and each bridge port's VLAN table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvmnet.model.vlan import PortVlan, vlan_ok

BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4


def bridges_of(links: Iterable[Any]) -> dict[str, tuple[bool, int]]:
    """Bridge name -> (vlan_filtering, default PVID; 0 = none) from a link dump."""
    out: dict[str, tuple[bool, int]] = {}
    for m in links:
        info = m.get("IFLA_LINKINFO")
        if info is None or info.get("IFLA_INFO_KIND") != "bridge":
            continue
        data = info.get("IFLA_INFO_DATA")
        name = m.get("IFLA_IFNAME")
        if data is None or not name:
            continue
        out[str(name)] = (bool(data.get("IFLA_BR_VLAN_FILTERING")),
                          int(data.get("IFLA_BR_VLAN_DEFAULT_PVID") or 0))
    return out


def port_tables(msgs: Iterable[Any]) -> dict[str, frozenset[PortVlan]]:
    """Link name -> its VLAN table (vid, pvid, untagged) from an AF_BRIDGE dump with
    RTEXT_FILTER_BRVLAN (one entry per VLAN, not ranges): every bridge port, an empty
    table for one on no VLAN."""
    out: dict[str, frozenset[PortVlan]] = {}
    for m in msgs:
        name = m.get("IFLA_IFNAME")
        if not name:
            continue
        # a port with no VLAN at all comes without IFLA_AF_SPEC: an empty table, which is
        # what plan must see (every VLAN taken off a tap by hand)
        spec = m.get("IFLA_AF_SPEC")
        entries = set()
        for info in spec.get_attrs("IFLA_BRIDGE_VLAN_INFO") if spec is not None else ():
            vid, flags = info.get("vid"), int(info.get("flags") or 0)
            if vlan_ok(vid):
                entries.add((int(vid), bool(flags & BRIDGE_VLAN_INFO_PVID),
                             bool(flags & BRIDGE_VLAN_INFO_UNTAGGED)))
        out[str(name)] = frozenset(entries)
    return out

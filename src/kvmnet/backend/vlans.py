"""Guests' VLANs on a Linux bridge with vlan_filtering, over netlink (pyroute2): read
each bridge's vlan_filtering and default PVID and each tap's VLAN table, and set a tap's
VLANs (what `bridge vlan add/del dev TAP` does).

libvirt 11 and later set a tap's VLANs themselves from the NIC's `<vlan>`; libvirt 9
cannot (it allows `<vlan>` on Open vSwitch ports only), so there kvmnet sets them: when
apply attaches or changes a NIC of a running guest, and at every start of the guest
through its libvirt qemu hook (kvmnet.backend.vlan_hook), which calls set_port here.
Plan compares the tables read here with the spec: a VLAN taken off a tap by hand shows.

set_port never leaks: it first takes off what is not wanted (so the port is, for a
moment, on fewer VLANs, never on a wrong one), then adds what is; each id is checked
again where it is written (render.guard.require_vlan), and the port must be one of a
bridge with vlan_filtering (else a VLAN would mean nothing: every frame reaches it).
"""

from __future__ import annotations

from kvmnet.backend.host import iproute
from kvmnet.errors import LiveError
from kvmnet.model.types import parse_ifname
from kvmnet.model.vlan import PortVlan, VlanLive, Vlans, entries_text
from kvmnet.parse.vlans import BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED
from kvmnet.render.guard import require_vlan

LIBVIRT_NATIVE = 11_000_000   # libvirt 11.0.0: <vlan> on a Linux bridge with vlan_filtering


def read_vlans(netns: str | None, native: bool, hook: str | None) -> VlanLive:
    """Every bridge's (vlan_filtering, default PVID) and every port's VLAN table."""
    from pyroute2.netlink.exceptions import NetlinkError

    from kvmnet.parse.vlans import bridges_of, port_tables

    try:
        with iproute(netns) as ipr:
            bridges = bridges_of(ipr.get_links())
            ports = port_tables(ipr.get_vlans())
    except (OSError, NetlinkError) as e:
        raise LiveError(f"cannot read bridges' VLANs: {getattr(e, 'strerror', None) or e}"
                        ) from None
    return VlanLive(native=native, bridges=bridges, ports=ports, hook=hook)


def wanted_entries(want: Vlans | None, default_pvid: int) -> frozenset[PortVlan]:
    """A port's table for `want`; None: the bridge's default PVID, untagged (a NIC with
    no VLAN of its own), or nothing when the bridge has none."""
    if want is not None:
        return want.entries()
    return frozenset({(default_pvid, True, True)}) if default_pvid else frozenset()


def set_port(tap: str, want: Vlans | None, netns: str | None = None) -> str:
    """Make tap's VLAN table `want` (None: its bridge's default PVID); a line for the
    report ('' when it already was)."""
    from pyroute2.netlink.exceptions import NetlinkError

    from kvmnet.parse.vlans import bridges_of, port_tables

    try:
        parse_ifname(tap)
    except ValueError as e:
        raise LiveError(f"not setting VLANs on {tap!r}: {e}") from None
    try:
        with iproute(netns) as ipr:
            idx = ipr.link_lookup(ifname=tap)
            if not idx:
                raise LiveError(f"cannot set the VLANs of {tap}: no such link")
            link = ipr.get_links(idx[0])[0]
            master = link.get("IFLA_MASTER")
            names = {m["index"]: m.get("IFLA_IFNAME") for m in ipr.get_links()}
            bridge = names.get(master) if master else None
            filtering, pvid = bridges_of(ipr.get_links(master)).get(
                str(bridge), (False, 0)) if master else (False, 0)
            if not filtering:
                raise LiveError(f"not setting VLANs on {tap}: it is not a port of a bridge "
                                f"with vlan_filtering ({bridge or 'no bridge'}): a VLAN "
                                "would mean nothing there")
            have = port_tables(ipr.get_vlans(index=idx[0])).get(tap, frozenset())
            target = wanted_entries(want, pvid)
            if have == target:
                return ""
            for vid, _p, _u in sorted(have - target):
                ipr.vlan_filter("del", index=idx[0], vlan_info={"vid": require_vlan(vid)})
            for vid, p, u in sorted(target - have):
                flags = (BRIDGE_VLAN_INFO_PVID if p else 0) | (
                    BRIDGE_VLAN_INFO_UNTAGGED if u else 0)
                ipr.vlan_filter("add", index=idx[0],
                                vlan_info={"vid": require_vlan(vid), "flags": flags})
    except (OSError, NetlinkError) as e:
        raise LiveError(f"cannot set the VLANs of {tap}: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    return f"{tap} on {bridge}: {entries_text(have)} -> {entries_text(target)}"

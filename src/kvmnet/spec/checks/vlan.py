"""Checks of VLANs: host bridges' vlan_filtering, pvid and vlans; networks' portgroups;
guests' NICs' vlan, vlans and native.

What a switch would refuse is refused here, before anything changes: a VLAN id twice, an
access VLAN and a trunk on one port, a native VLAN that is not in the trunk, and a VLAN
on a bridge that does not carry it (a bridge without vlan_filtering carries none: a
"VLAN" there would reach every port, a leak). A bridge that is not in the spec is
checked by plan, on the live bridge.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvmnet.errors import close_matches
from kvmnet.model.derive import nic_bridge
from kvmnet.model.spec import Spec
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_

_BOTH = ("write vlan: N for an access port (one VLAN, untagged) or vlans: [N, M] for a "
         "trunk (tagged, with native: for the untagged one), not both")


def vlans(f: Findings, spec: Spec) -> None:
    _host_bridges(f, spec)
    for name, net in spec.networks.items():
        defaults = [p for p, pg in net.portgroups.items() if pg.default]
        for extra in defaults[1:]:
            f.error(("networks", name, "portgroups", extra, "default"), f"portgroup "
                    f"{defaults[0]} of network {name} is already its default: one default "
                    "portgroup per network; remove default: true here",
                    refs=[("networks", name, "portgroups", defaults[0])])
        for pname, pg in net.portgroups.items():
            path: Path_ = ("networks", name, "portgroups", pname)
            if not keys(f, path, pg.vlan, pg.vlans, pg.native):
                continue
            if net.mode != "bridge":
                f.error(path + (_first_key(pg.vlan),), f"network {name} is mode "
                        f"{net.mode}, not bridge: VLANs are set only on a host bridge's "
                        "ports; a portgroup's VLANs need mode: bridge over a host bridge with "
                        "vlan_filtering: true", refs=[("networks", name, "mode")])
                continue
            carried(f, spec, path, net.bridge, pg.vlan, pg.vlans,
                    refs=[("networks", name, "bridge"), ("networks", name, "mode")])
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            path = ("guests", gname, "interfaces", i)
            _portgroup(f, spec, path, nic.network, nic.portgroup)
            if not keys(f, path, nic.vlan, nic.vlans, nic.native):
                continue
            bridge = nic_bridge(spec, nic)
            onet = spec.networks.get(nic.network or "")
            if bridge is None and onet is not None:
                f.error(path + (_first_key(nic.vlan),), f"network {nic.network} is mode "
                        f"{onet.mode}, not bridge: VLANs are set only on a host bridge's "
                        "ports; put the NIC on a mode: bridge network, or on bridge: NAME, "
                        "over a host bridge with vlan_filtering: true",
                        refs=[("networks", str(nic.network), "mode")])
                continue
            refs: list[Path_] = [path + ("network",), path + ("bridge",)]
            if onet is not None:
                refs.append(("networks", str(nic.network), "bridge"))
            carried(f, spec, path, bridge, nic.vlan, nic.vlans, refs=refs)


def _first_key(vlan: int | None) -> str:
    return "vlan" if vlan is not None else "vlans"


def keys(f: Findings, path: Path_, vlan: int | None, vlans: Sequence[int],
         native: int | None) -> bool:
    """vlan / vlans / native of one port (a NIC, a portgroup) agree; False when none is
    set or something is wrong (reported)."""
    ok = True
    if vlan is not None and vlans:
        f.error(path + ("vlans",), _BOTH, refs=[path + ("vlan",)])
        ok = False
    seen: set[int] = set()
    for j, v in enumerate(vlans):
        if v in seen:
            f.error(path + ("vlans", j), f"VLAN {v} is listed twice: write each once")
            ok = False
        seen.add(v)
    if native is not None and not vlans:
        f.error(path + ("native",), "native: is the untagged VLAN of a trunk: add "
                f"vlans: [{native}, ...] with it, or write vlan: {native} for an access port "
                "instead", refs=[path + ("vlans",)])
        ok = False
    elif native is not None and native not in vlans:
        f.error(path + ("native",), f"native VLAN {native} is not in vlans "
                f"{sorted(seen)}: add it to vlans, or write one of them",
                refs=[path + ("vlans",)])
        ok = False
    return ok and (vlan is not None or bool(vlans))


def carried(f: Findings, spec: Spec, path: Path_, bridge: str | None, vlan: int | None,
            vlans: Sequence[int], refs: Sequence[Path_] = ()) -> None:
    """Every VLAN of a port is one its bridge carries (its `vlans:` or its `pvid`); a
    bridge without vlan_filtering carries none. A bridge not in the spec: plan checks."""
    hb = spec.host.bridges.get(bridge or "")
    if hb is None or bridge is None:
        return
    brefs = [*refs, ("host", "bridges", bridge)]
    if not hb.vlan_filtering:
        f.error(path + (_first_key(vlan),), f"bridge {bridge} does not filter VLANs "
                "(its frames would reach every port, whatever their VLAN): set "
                f"vlan_filtering: true and vlans: [...] on host.bridges.{bridge}, or remove "
                "the VLAN here", refs=brefs)
        return
    have = set(hb.vlans) | {hb.pvid}
    ports = [("vlan", None, vlan)] if vlan is not None else [
        ("vlans", j, v) for j, v in enumerate(vlans)]
    for key, j, v in ports:
        if v is not None and v not in have:
            f.error(path + ((key,) if j is None else (key, j)), f"bridge {bridge} does "
                    f"not carry VLAN {v} (vlans: {sorted(hb.vlans)}, pvid: {hb.pvid}): add "
                    f"{v} to host.bridges.{bridge}.vlans, or use one it carries",
                    refs=brefs)


def _portgroup(f: Findings, spec: Spec, path: Path_, network: str | None,
               portgroup: str | None) -> None:
    """A NIC's portgroup is one its network lists (when it lists any)."""
    net = spec.networks.get(network or "")
    if portgroup is None or net is None or not net.portgroups:
        return
    if portgroup not in net.portgroups:
        close = close_matches(portgroup, list(net.portgroups), n=1)
        hint = (f"did you mean {close[0]!r}?" if close else
                f"write one of {', '.join(net.portgroups)}, or add it under "
                f"networks.{network}.portgroups")
        f.error(path + ("portgroup",), f"network {network} has no portgroup "
                f"{portgroup!r}: {hint}", refs=[("networks", str(network), "portgroups")])


def _host_bridges(f: Findings, spec: Spec) -> None:
    """pvid and vlans only on a bridge with vlan_filtering; each VLAN once; the pvid (the
    untagged VLAN) not also tagged."""
    for br, hb in spec.host.bridges.items():
        path: Path_ = ("host", "bridges", br)
        if not hb.vlan_filtering:
            for key, set_ in (("pvid", hb.pvid != 1), ("vlans", bool(hb.vlans))):
                if set_:
                    f.error(path + (key,), f"{key} needs vlan_filtering: true on bridge "
                            f"{br} (without it the bridge ignores VLANs): add it, or remove "
                            f"{key}", refs=[path + ("vlan_filtering",)])
            continue
        seen: set[int] = set()
        for j, v in enumerate(hb.vlans):
            if v in seen:
                f.error(path + ("vlans", j), f"VLAN {v} is listed twice: write each once")
            elif v == hb.pvid:
                f.error(path + ("vlans", j), f"VLAN {v} is the bridge's pvid (its untagged "
                        "VLAN): a VLAN is untagged or tagged on a port, not both; remove it "
                        "from vlans, or set another pvid", refs=[path + ("pvid",)])
            seen.add(v)

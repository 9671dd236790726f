"""Host bridges for netplan: one YAML file for all bridges, dumped with
PyYAML from plain data (never a text template).

netplan reads /etc/netplan/*.yaml in name order and later files override
earlier ones, so 90-kvmnet.yaml wins over a distro's 50-cloud-init.yaml for
the ports it names. netplan wants its files mode 0600 (see hostconf.file_mode).
"""

from __future__ import annotations

from typing import Any

import yaml

from kvmnet.model.spec import HostBond, HostBridge, Spec
from kvmnet.render.guard import require_one_line
from kvmnet.render.host_common import HEADER, require_links

PATH = "etc/netplan/90-kvmnet.yaml"


def render_netplan(spec: Spec) -> dict[str, str]:
    """{'etc/netplan/90-kvmnet.yaml': text}, or {} when the spec has no host bridge.
    (YAML quotes a line break, but netplan hands the values to networkd and NM.)"""
    host = spec.host
    require_one_line("netplan file of host.bridges", host.bridges, host.bonds, host.vlans)
    require_links("netplan file", host)
    bridges = spec.host.bridges
    if not bridges:
        return {}
    ethernets: dict[str, Any] = {}
    mtu = {p: hb.mtu for hb in bridges.values() for p in hb.ports}
    for hb in bridges.values():
        for port in hb.ports:
            if port not in host.bonds and port not in host.vlans:
                ethernets[port] = _port(hb.mtu)
    for name, bond in host.bonds.items():
        for port in bond.ports:
            ethernets[port] = _port(mtu.get(name))
    for v in host.vlans.values():  # a VLAN's NIC must be defined; its own config merges
        if v.link not in host.bonds and v.link not in ethernets:
            ethernets[v.link] = {}
    network: dict[str, Any] = {"version": 2}
    if ethernets:
        network["ethernets"] = ethernets
    if host.bonds:
        network["bonds"] = {name: _bond(bond, mtu.get(name))
                            for name, bond in host.bonds.items()}
    if host.vlans:
        network["vlans"] = {name: {"id": v.id, "link": v.link, "dhcp4": False,
                                   "dhcp6": False, "accept-ra": False}
                            for name, v in host.vlans.items()}
    network["bridges"] = {name: _bridge(hb) for name, hb in bridges.items()}
    body = yaml.safe_dump({"network": network}, sort_keys=False, default_flow_style=False)
    hint = "# netplan wants this file mode 0600; apply with: netplan try\n"
    out = {PATH: HEADER + hint + body}
    out.update(_vlan_dropins(spec))
    return out


def _vlan_dropins(spec: Spec) -> dict[str, str]:
    """netplan has no key for a VLAN-aware bridge: with its networkd backend (the
    default on servers), drop-ins beside the units it generates (10-netplan-NAME.*)
    turn filtering on and give each port its VLANs. NetworkManager as netplan's
    renderer ignores them: use host.renderer: networkmanager there."""
    from kvmnet.render.host_common import ini
    from kvmnet.render.host_networkd import DIR, bridge_vlans

    out: dict[str, str] = {}
    note = ["netplan cannot say vlan_filtering: kvmnet's drop-in for netplan's "
            "networkd unit"]
    for name, hb in spec.host.bridges.items():
        if not hb.vlan_filtering:
            continue
        out[f"{DIR}/10-netplan-{name}.netdev.d/50-kvmnet-vlan.conf"] = ini(
            [("Bridge", [("VLANFiltering", "yes"), ("DefaultPVID", str(hb.pvid))])], note)
        for port in hb.ports:
            out[f"{DIR}/10-netplan-{port}.network.d/50-kvmnet-vlan.conf"] = ini(
                bridge_vlans(hb), note)
    return out


def _port(mtu: int | None) -> dict[str, Any]:
    port: dict[str, Any] = {"dhcp4": False}
    if mtu is not None:
        port["mtu"] = mtu
    return port


def _bond(bond: HostBond, mtu: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"mode": bond.mode, "mii-monitor-interval": bond.miimon}
    if bond.lacp_rate is not None:
        params["lacp-rate"] = bond.lacp_rate
    if bond.xmit_hash_policy is not None:
        params["transmit-hash-policy"] = bond.xmit_hash_policy
    if bond.primary is not None:
        params["primary"] = bond.primary
    out: dict[str, Any] = {"interfaces": list(bond.ports), "dhcp4": False, "dhcp6": False,
                           "accept-ra": False}
    if mtu is not None:
        out["mtu"] = mtu
    out["parameters"] = params
    return out


def _bridge(hb: HostBridge) -> dict[str, Any]:
    br: dict[str, Any] = {}
    if hb.ports:
        br["interfaces"] = list(hb.ports)
    if hb.mac is not None:
        br["macaddress"] = hb.mac
    br["dhcp4"] = hb.dhcp
    if hb.dhcp and hb.metric is not None:
        br["dhcp4-overrides"] = {"route-metric": hb.metric}
    if hb.address:
        br["addresses"] = [str(a) for a in hb.address]
    if hb.slaac is not None:
        br["accept-ra"] = hb.slaac
    routes = []
    for gw in filter(None, (hb.gateway_for(4), hb.gateway_for(6))):
        route: dict[str, Any] = {"to": "default", "via": str(gw)}
        if hb.metric is not None:
            route["metric"] = hb.metric
        routes.append(route)
    if routes:
        br["routes"] = routes
    if hb.dns:
        br["nameservers"] = {"addresses": [str(d) for d in hb.dns]}
    if hb.mtu is not None:
        br["mtu"] = hb.mtu
    params: dict[str, Any] = {"stp": hb.stp}
    if hb.forward_delay is not None:
        params["forward-delay"] = hb.forward_delay
    br["parameters"] = params
    return br

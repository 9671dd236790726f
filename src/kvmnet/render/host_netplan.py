"""Host bridges for netplan: one YAML file for all bridges, dumped with
PyYAML from plain data (never a text template).

netplan reads /etc/netplan/*.yaml in name order and later files override
earlier ones, so 90-kvmnet.yaml wins over a distro's 50-cloud-init.yaml for
the ports it names. netplan wants its files mode 0600 (see hostconf.file_mode).
"""

from __future__ import annotations

from typing import Any

import yaml

from kvmnet.model.spec import HostBridge, Spec
from kvmnet.render.guard import require_one_line
from kvmnet.render.host_common import HEADER

PATH = "etc/netplan/90-kvmnet.yaml"


def render_netplan(spec: Spec) -> dict[str, str]:
    """{'etc/netplan/90-kvmnet.yaml': text}, or {} when the spec has no host bridge.
    (YAML quotes a line break, but netplan hands the values to networkd and NM.)"""
    require_one_line("netplan file of host.bridges", spec.host.bridges)
    bridges = spec.host.bridges
    if not bridges:
        return {}
    ethernets: dict[str, Any] = {}
    for hb in bridges.values():
        for port in hb.ports:
            ethernets[port] = _port(hb)
    network: dict[str, Any] = {"version": 2}
    if ethernets:
        network["ethernets"] = ethernets
    network["bridges"] = {name: _bridge(hb) for name, hb in bridges.items()}
    body = yaml.safe_dump({"network": network}, sort_keys=False, default_flow_style=False)
    hint = "# netplan wants this file mode 0600; apply with: netplan try\n"
    return {PATH: HEADER + hint + body}


def _port(hb: HostBridge) -> dict[str, Any]:
    port: dict[str, Any] = {"dhcp4": False}
    if hb.mtu is not None:
        port["mtu"] = hb.mtu
    return port


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
    if hb.gateway is not None:
        route: dict[str, Any] = {"to": "default", "via": str(hb.gateway)}
        if hb.metric is not None:
            route["metric"] = hb.metric
        br["routes"] = [route]
    if hb.dns:
        br["nameservers"] = {"addresses": [str(d) for d in hb.dns]}
    if hb.mtu is not None:
        br["mtu"] = hb.mtu
    params: dict[str, Any] = {"stp": hb.stp}
    if hb.forward_delay is not None:
        params["forward-delay"] = hb.forward_delay
    br["parameters"] = params
    return br

"""Host bridges for systemd-networkd: a .netdev that creates the bridge, a
.network that addresses it, and a .network per port that enslaves it.

networkd takes the first .network file (in name order) that matches a link,
so the 50- prefix puts kvmnet's files ahead of a distro's catch-all 80-/99-.
"""

from __future__ import annotations

from kvmnet.model.spec import HostBridge, Spec
from kvmnet.render.guard import require_one_line
from kvmnet.render.host_common import Section, ini

DIR = "etc/systemd/network"


def render_networkd(spec: Spec) -> dict[str, str]:
    """50-kvmnet-BR.netdev, 50-kvmnet-BR.network and 50-kvmnet-PORT.network files."""
    require_one_line("systemd-networkd units of host.bridges", spec.host.bridges)
    out: dict[str, str] = {}
    for name, hb in spec.host.bridges.items():
        out[f"{DIR}/50-kvmnet-{name}.netdev"] = _netdev(name, hb)
        out[f"{DIR}/50-kvmnet-{name}.network"] = _network(name, hb)
        for port in hb.ports:
            out[f"{DIR}/50-kvmnet-{port}.network"] = _port(name, port, hb)
    return out


def _netdev(name: str, hb: HostBridge) -> str:
    bridge = [("STP", "yes" if hb.stp else "no")]
    if hb.forward_delay is not None:
        bridge.append(("ForwardDelaySec", str(hb.forward_delay)))
    netdev = [("Name", name), ("Kind", "bridge")]
    if hb.mac is not None:  # else networkd derives one from /etc/machine-id
        netdev.append(("MACAddress", hb.mac))
    return ini([("NetDev", netdev), ("Bridge", bridge)])


def _network(name: str, hb: HostBridge) -> str:
    net = [("Address", str(a)) for a in hb.address]
    gw_route: list[tuple[str, str]] = []
    if hb.gateway is not None and hb.metric is not None:
        gw_route = [("Gateway", str(hb.gateway)), ("Metric", str(hb.metric))]
    elif hb.gateway is not None:
        net.append(("Gateway", str(hb.gateway)))
    net += [("DNS", str(d)) for d in hb.dns]
    net.append(("DHCP", "ipv4" if hb.dhcp else "no"))
    # A host bridge carries guests even while its uplink is unplugged.
    net.append(("ConfigureWithoutCarrier", "yes"))
    sections: list[Section] = [("Match", [("Name", name)]), ("Network", net)]
    if hb.mtu is not None:
        sections.append(("Link", [("MTUBytes", str(hb.mtu))]))
    if gw_route:
        sections.append(("Route", gw_route))
    if hb.dhcp and hb.metric is not None:
        sections.append(("DHCPv4", [("RouteMetric", str(hb.metric))]))
    return ini(sections)


def _port(bridge: str, port: str, hb: HostBridge) -> str:
    sections: list[Section] = [("Match", [("Name", port)]),
                               ("Network", [("Bridge", bridge)])]
    if hb.mtu is not None:
        # The bridge's MTU does not reach its ports: set both (systemd#24311).
        sections.append(("Link", [("MTUBytes", str(hb.mtu))]))
    return ini(sections)

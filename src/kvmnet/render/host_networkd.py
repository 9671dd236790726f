"""Host bridges for systemd-networkd: a .netdev that creates the bridge, a
.network that addresses it, and a .network per port that enslaves it; a .netdev for
each bond and VLAN (host.bonds, host.vlans), a .network per bond NIC that enslaves it,
and VLAN= in the .network of the link that carries the VLAN.

networkd takes the first .network file (in name order) that matches a link,
so the 50- prefix puts kvmnet's files ahead of a distro's catch-all 80-/99-.
"""

from __future__ import annotations

from kvmnet.model.spec import Host, HostBond, HostBridge, Spec
from kvmnet.render.guard import require_one_line, require_vlan_ids
from kvmnet.render.host_common import Section, ini, port_mtu, require_links, vlans_on

DIR = "etc/systemd/network"


def render_networkd(spec: Spec) -> dict[str, str]:
    """50-kvmnet-BR.netdev, 50-kvmnet-BR.network and 50-kvmnet-PORT.network files."""
    host = spec.host
    require_one_line("systemd-networkd units of host.bridges", host.bridges, host.bonds,
                     host.vlans)
    require_links("systemd-networkd units", host)
    out: dict[str, str] = {}
    mtu = port_mtu(host)
    for name, hb in host.bridges.items():
        out[f"{DIR}/50-kvmnet-{name}.netdev"] = _netdev(name, hb)
        out[f"{DIR}/50-kvmnet-{name}.network"] = _network(name, hb, host)
        for port in hb.ports:
            out[f"{DIR}/50-kvmnet-{port}.network"] = _port(port, mtu.get(port), host,
                                                           ("Bridge", name), vlans=hb)
    for name, bond in host.bonds.items():
        out[f"{DIR}/50-kvmnet-{name}.netdev"] = _bond(name, bond)
        if not any(name in hb.ports for hb in host.bridges.values()):  # only VLANs on it
            out[f"{DIR}/50-kvmnet-{name}.network"] = _port(name, None, host)
        for port in bond.ports:
            out[f"{DIR}/50-kvmnet-{port}.network"] = _port(
                port, mtu.get(name), host, ("Bond", name), primary=port == bond.primary)
    for name, v in host.vlans.items():
        out[f"{DIR}/50-kvmnet-{name}.netdev"] = ini([
            ("NetDev", [("Name", name), ("Kind", "vlan")]), ("VLAN", [("Id", str(v.id))])])
        link = f"{DIR}/50-kvmnet-{v.link}.network"
        if link not in out:  # a NIC that only carries VLANs
            out[link] = _port(v.link, None, host, comments=[
                f"{v.link} carries VLANs of the spec: this file is the .network networkd "
                f"uses for {v.link} (the first in name order), so an address of "
                f"{v.link} belongs in the spec (put {v.link} in a host bridge)"])
    return out


def _bond(name: str, bond: HostBond) -> str:
    opts = [("Mode", bond.mode), ("MIIMonitorSec", f"{bond.miimon}ms")]
    if bond.lacp_rate is not None:
        opts.append(("LACPTransmitRate", bond.lacp_rate))
    if bond.xmit_hash_policy is not None:
        opts.append(("TransmitHashPolicy", bond.xmit_hash_policy))
    return ini([("NetDev", [("Name", name), ("Kind", "bond")]), ("Bond", opts)])


def _netdev(name: str, hb: HostBridge) -> str:
    bridge = [("STP", "yes" if hb.stp else "no")]
    if hb.forward_delay is not None:
        bridge.append(("ForwardDelaySec", str(hb.forward_delay)))
    if hb.vlan_filtering:
        bridge += [("VLANFiltering", "yes"), ("DefaultPVID", str(hb.pvid))]
    netdev = [("Name", name), ("Kind", "bridge")]
    if hb.mac is not None:  # else networkd derives one from /etc/machine-id
        netdev.append(("MACAddress", hb.mac))
    return ini([("NetDev", netdev), ("Bridge", bridge)])


def _network(name: str, hb: HostBridge, host: Host) -> str:
    net = [("Address", str(a)) for a in hb.address]
    gws = [gw for gw in (hb.gateway_for(4), hb.gateway_for(6)) if gw is not None]
    if hb.metric is None:  # else each gets a [Route] with its metric
        net += [("Gateway", str(gw)) for gw in gws]
    net += [("DNS", str(d)) for d in hb.dns]
    net.append(("DHCP", "ipv4" if hb.dhcp else "no"))
    if hb.slaac is not None:  # (networkd takes RAs itself, also while forwarding)
        net.append(("IPv6AcceptRA", "yes" if hb.slaac else "no"))
    # A host bridge carries guests even while its uplink is unplugged.
    net.append(("ConfigureWithoutCarrier", "yes"))
    net += [("VLAN", v) for v in vlans_on(host, name)]
    sections: list[Section] = [("Match", [("Name", name)]), ("Network", net)]
    if hb.mtu is not None:
        sections.append(("Link", [("MTUBytes", str(hb.mtu))]))
    if hb.metric is not None:
        sections += [("Route", [("Gateway", str(gw)), ("Metric", str(hb.metric))])
                     for gw in gws]
    if hb.dhcp and hb.metric is not None:
        sections.append(("DHCPv4", [("RouteMetric", str(hb.metric))]))
    return ini(sections)


def _port(port: str, mtu: int | None, host: Host, master: tuple[str, str] | None = None,
          primary: bool = False, comments: list[str] | None = None,
          vlans: HostBridge | None = None) -> str:
    """A link kvmnet configures without addresses: a bridge's or bond's port (master:
    ('Bridge', br) or ('Bond', bond)), a bond, a NIC that carries VLANs."""
    net = [master] if master else []
    if primary:
        net.append(("PrimarySlave", "yes"))
    if port in host.bonds or port in host.vlans or (master and master[0] == "Bond"):
        net.append(("LinkLocalAddressing", "no"))
    if port in host.bonds:
        net.append(("ConfigureWithoutCarrier", "yes"))
    net += [("VLAN", v) for v in vlans_on(host, port)]
    sections: list[Section] = [("Match", [("Name", port)]), ("Network", net)]
    if mtu is not None:
        # The bridge's MTU does not reach its ports: set both (systemd#24311).
        sections.append(("Link", [("MTUBytes", str(mtu))]))
    if vlans is not None and vlans.vlan_filtering:
        sections += bridge_vlans(vlans)
    return ini(sections, comments or ())


def bridge_vlans(hb: HostBridge) -> list[Section]:
    """A port of a VLAN-aware bridge: its native VLAN (the bridge's PVID) untagged, the
    bridge's VLANs tagged (networkd sets exactly these on the port)."""
    require_vlan_ids("systemd-networkd units", hb.pvid, *hb.vlans)
    out: list[Section] = [("BridgeVLAN", [("PVID", str(hb.pvid)),
                                          ("EgressUntagged", str(hb.pvid))])]
    return out + [("BridgeVLAN", [("VLAN", str(v))]) for v in hb.vlans]

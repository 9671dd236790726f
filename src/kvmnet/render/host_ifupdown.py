"""Host bridges for Debian's ifupdown: one file per bridge under
/etc/network/interfaces.d/, and one per bond (host.bonds: ifenslave's bond-*
keywords), named kvmnet-0-BOND so that `source .../*` reads it before the bridges
that use it. A VLAN (host.vlans) is made by the bridge it is a port of, in that
bridge's first stanza, before bridge-utils enslaves its ports.

Several `iface BR inet…` stanzas for one interface are how ifupdown (0.8+)
gives it several addresses; the bridge_* options go in the first stanza
only, as the bridge-utils hook runs once per stanza that carries them.
"""

from __future__ import annotations

from kvmnet.model.spec import Host, HostBond, HostBridge, Spec
from kvmnet.model.types import IPAddr
from kvmnet.render.guard import require_address, require_one_line, require_vlan_ids
from kvmnet.render.host_common import HEADER, by_family, port_mtu, require_links

DIR = "etc/network/interfaces.d"


def render_ifupdown(spec: Spec) -> dict[str, str]:
    """{'etc/network/interfaces.d/kvmnet-BR': text} for every host bridge. /bin/sh runs
    its post-up lines at boot: nothing that could end a line reaches them."""
    host = spec.host
    require_one_line("ifupdown stanzas of host.bridges", host.bridges, host.bonds,
                     host.vlans)
    require_links("ifupdown stanzas", host)
    out = {f"{DIR}/kvmnet-{name}": _file(name, hb, host)
           for name, hb in host.bridges.items()}
    mtu = port_mtu(host)
    for name, bond in host.bonds.items():
        out[f"{DIR}/kvmnet-0-{name}"] = _bond_file(name, bond, mtu.get(name))
    return out


def _file(name: str, hb: HostBridge, host: Host) -> str:
    stanzas = [_port(p, hb.mtu) for p in hb.ports if p not in host.bonds]
    stanzas += _bridge(name, hb, host)
    return HEADER + _hint(name, hb) + "\n" + "\n".join(stanzas)


def _bond_file(name: str, bond: HostBond, mtu: int | None) -> str:
    """The bond and its NICs (ifenslave's hooks read bond-*; it needs that package)."""
    hint = ("# hint: the bond-* options need the ifenslave package. Remove any stanza of "
            f"{', '.join(bond.ports)} from /etc/network/interfaces: {name} takes over.\n")
    lines = [f"auto {name}", f"iface {name} inet manual",
             "    bond-slaves " + " ".join(bond.ports),
             f"    bond-mode {bond.mode}", f"    bond-miimon {bond.miimon}"]
    if bond.primary is not None:
        lines.append(f"    bond-primary {bond.primary}")
    if bond.lacp_rate is not None:
        lines.append(f"    bond-lacp-rate {bond.lacp_rate}")
    if bond.xmit_hash_policy is not None:
        lines.append(f"    bond-xmit-hash-policy {bond.xmit_hash_policy}")
    if mtu is not None:
        lines.append(f"    mtu {mtu}")
    stanzas = [_port(p, mtu) for p in bond.ports] + ["\n".join(lines) + "\n"]
    return HEADER + hint + "\n" + "\n".join(stanzas)


def _hint(name: str, hb: HostBridge) -> str:
    lines = [
        "hint: /etc/network/interfaces must contain the line",
        "  source /etc/network/interfaces.d/*",
        "(Debian's default does; 'source-directory' skips names with a dot) or ifupdown",
        "never reads this file. The bridge_* options need the bridge-utils package.",
    ]
    if hb.ports:
        ports = ", ".join(hb.ports)
        lines.append(f"Remove any stanza of {ports} from /etc/network/interfaces: "
                     f"{name} takes over.")
    if hb.dns:
        lines.append("dns-nameservers needs the resolvconf package.")
    return "".join(f"# {line}\n" for line in lines)


def _port(port: str, mtu: int | None) -> str:
    lines = [f"iface {port} inet manual"]
    if mtu is not None:
        lines.append(f"    mtu {mtu}")
    return "\n".join(lines) + "\n"


def _vlan_lines(hb: HostBridge, host: Host) -> list[str]:
    """Make each VLAN port before bridge-utils enslaves it (pre-up lines run before the
    if-pre-up.d hooks), and remove it after the bridge is down."""
    lines = []
    for p in hb.ports:
        v = host.vlans.get(p)
        if v is not None:
            lines += [f"    pre-up ip link show dev {p} >/dev/null 2>&1 || ip link add link "
                      f"{v.link} name {p} type vlan id {v.id}",
                      f"    post-down ip link del dev {p} 2>/dev/null || true"]
    return lines


def _bridge(name: str, hb: HostBridge, host: Host) -> list[str]:
    """The stanzas of the bridge itself: the first one creates it."""
    v4, v6 = by_family(hb.address, 4), by_family(hb.address, 6)
    stanzas: list[list[str]] = []
    if hb.dhcp:
        stanzas.append([f"iface {name} inet dhcp"] + _gateway(hb, 4, dhcp=True))
    for i, a in enumerate(v4):
        extra = _gateway(hb, 4) if i == 0 else []
        stanzas.append([f"iface {name} inet static", f"    address {a}"] + extra)
    for i, a in enumerate(v6):
        extra = _gateway(hb, 6) + _ra(hb, static=True) if i == 0 else []
        stanzas.append([f"iface {name} inet6 static", f"    address {a}"] + extra)
    if hb.slaac and not v6:
        stanzas.append([f"iface {name} inet6 auto"] + _ra(hb, static=False)
                       + _route6(hb, hb.gateway_for(6)))
    if not stanzas:
        stanzas.append([f"iface {name} inet manual"])
    first = stanzas[0]
    first += _vlan_lines(hb, host)
    first += _bridge_options(hb)
    if hb.mac is not None:
        first.append(f"    hwaddress {hb.mac}")
    if hb.mtu is not None and " dhcp" not in first[0]:
        first.append(f"    mtu {hb.mtu}")
    if hb.dns:
        first.append("    dns-nameservers " + " ".join(str(d) for d in hb.dns))
    stanzas[0] = [f"auto {name}"] + first
    return ["\n".join(s) + "\n" for s in stanzas]


def _bridge_options(hb: HostBridge) -> list[str]:
    lines = ["    bridge_ports " + (" ".join(hb.ports) if hb.ports else "none"),
             "    bridge_stp " + ("on" if hb.stp else "off")]
    if hb.forward_delay is not None:
        lines.append(f"    bridge_fd {hb.forward_delay}")
    if hb.vlan_filtering:
        # bridge-utils turns filtering on; the default PVID (which ports that keep the
        # old one follow) and each port's tagged VLANs are iproute2's, after the ports
        require_vlan_ids("ifupdown stanzas", hb.pvid, *hb.vlans)
        lines += ["    bridge_vlan_aware yes",
                  f"    post-up ip link set dev $IFACE type bridge vlan_default_pvid {hb.pvid}"]
        lines += [f"    post-up bridge vlan add vid {v} dev {p}" for p in hb.ports
                  for v in hb.vlans]
    return lines


def _ra(hb: HostBridge, static: bool) -> list[str]:
    """Router advertisements (slaac:). ifupdown's inet6 static ignores them unless told
    (accept_ra and autoconf default to 0 there); inet6 auto takes them. 2: also while
    the host forwards IPv6, as a KVM host with IPv6 networks does."""
    if hb.slaac is None:
        return []
    if not hb.slaac:
        return ["    accept_ra 0", "    autoconf 0"]
    return ["    accept_ra 2", "    autoconf 1"] if static else ["    accept_ra 2"]


def _route6(hb: HostBridge, gw: IPAddr | None) -> list[str]:
    """The IPv6 default route as post-up/pre-down commands: inet6 static has no metric
    option and inet6 auto no gateway one. /bin/sh runs them: the gateway is an address
    without scope id, checked again here (render.guard)."""
    if gw is None:
        return []
    require_address("ifupdown post-up route of a host bridge", gw)
    metric = f" metric {hb.metric}" if hb.metric is not None else ""
    route = f"default via {gw} dev $IFACE{metric}"
    return [f"    post-up ip -6 route add {route}", f"    pre-down ip -6 route del {route}"]


def _gateway(hb: HostBridge, version: int, dhcp: bool = False) -> list[str]:
    """gateway/metric lines for the first stanza of a family (IPv6 with a metric: an
    explicit `ip -6 route` pair, _route6)."""
    gw = hb.gateway_for(version)
    if dhcp:
        return [f"    metric {hb.metric}"] if hb.metric is not None else []
    if gw is None:
        return []
    if version == 6 and hb.metric is not None:
        return _route6(hb, gw)
    lines = [f"    gateway {gw}"]
    if hb.metric is not None:
        lines.append(f"    metric {hb.metric}")
    return lines

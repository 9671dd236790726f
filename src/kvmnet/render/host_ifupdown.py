"""Host bridges for Debian's ifupdown: one file per bridge under
/etc/network/interfaces.d/.

Several `iface BR inet…` stanzas for one interface are how ifupdown (0.8+)
gives it several addresses; the bridge_* options go in the first stanza
only, as the bridge-utils hook runs once per stanza that carries them.
"""

from __future__ import annotations

from kvmnet.model.spec import HostBridge, Spec
from kvmnet.render.guard import require_one_line
from kvmnet.render.host_common import HEADER, by_family

DIR = "etc/network/interfaces.d"


def render_ifupdown(spec: Spec) -> dict[str, str]:
    """{'etc/network/interfaces.d/kvmnet-BR': text} for every host bridge. /bin/sh runs
    its post-up lines at boot: nothing that could end a line reaches them."""
    require_one_line("ifupdown stanzas of host.bridges", spec.host.bridges)
    return {f"{DIR}/kvmnet-{name}": _file(name, hb)
            for name, hb in spec.host.bridges.items()}


def _file(name: str, hb: HostBridge) -> str:
    stanzas = [_port(p, hb) for p in hb.ports]
    stanzas += _bridge(name, hb)
    return HEADER + _hint(name, hb) + "\n" + "\n".join(stanzas)


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


def _port(port: str, hb: HostBridge) -> str:
    lines = [f"iface {port} inet manual"]
    if hb.mtu is not None:
        lines.append(f"    mtu {hb.mtu}")
    return "\n".join(lines) + "\n"


def _bridge(name: str, hb: HostBridge) -> list[str]:
    """The stanzas of the bridge itself: the first one creates it."""
    v4, v6 = by_family(hb.address, 4), by_family(hb.address, 6)
    stanzas: list[list[str]] = []
    if hb.dhcp:
        stanzas.append([f"iface {name} inet dhcp"] + _gateway(hb, 4, dhcp=True))
    for i, a in enumerate(v4):
        extra = _gateway(hb, 4) if i == 0 else []
        stanzas.append([f"iface {name} inet static", f"    address {a}"] + extra)
    for i, a in enumerate(v6):
        extra = _gateway(hb, 6) if i == 0 else []
        stanzas.append([f"iface {name} inet6 static", f"    address {a}"] + extra)
    if not stanzas:
        stanzas.append([f"iface {name} inet manual"])
    first = stanzas[0]
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
    return lines


def _gateway(hb: HostBridge, version: int, dhcp: bool = False) -> list[str]:
    """gateway/metric lines for the first stanza of a family.

    ifupdown's inet6 static has no metric option, so a metric on an IPv6
    gateway becomes an explicit `ip -6 route` pair.
    """
    gw = hb.gateway
    if dhcp:
        return [f"    metric {hb.metric}"] if hb.metric is not None else []
    if gw is None or gw.version != version:
        return []
    if version == 6 and hb.metric is not None:
        route = f"default via {gw} dev $IFACE metric {hb.metric}"
        return [f"    post-up ip -6 route add {route}",
                f"    pre-down ip -6 route del {route}"]
    lines = [f"    gateway {gw}"]
    if hb.metric is not None:
        lines.append(f"    metric {hb.metric}")
    return lines

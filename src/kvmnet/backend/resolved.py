"""systemd-resolved's D-Bus API (org.freedesktop.resolve1): each libvirt network's
bridge gets the network's dnsmasq as its DNS server and the network's domain as a
routing-only domain (`~lab.example`), so the host asks that dnsmasq, and only it,
for names in the domain (`ping web1.lab.example`). Through jeepney, a pure-Python
D-Bus client, on the system bus.

resolved forgets a link's settings when the link goes, and libvirt makes a new bridge
at every network start: the network hook (backend.hook) sets them again on `started`.

The messages are built by pure functions (tested without a bus); `call` sends one.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from kvmnet.errors import KvmnetError
from kvmnet.model.live import LinkDns

BUS_NAME = "org.freedesktop.resolve1"
PATH = "/org/freedesktop/resolve1"
MANAGER = "org.freedesktop.resolve1.Manager"
LINK = "org.freedesktop.resolve1.Link"


class ResolvedError(KvmnetError):
    """systemd-resolved refused a call, or cannot be reached."""


def _addr(path: str, interface: str, bus_name: str = BUS_NAME) -> Any:
    from jeepney import DBusAddress

    return DBusAddress(path, bus_name=bus_name, interface=interface)


def set_link_dns(ifindex: int, servers: list[str]) -> Any:
    """Manager.SetLinkDNS(ifindex, [(family, address bytes)])."""
    from jeepney import new_method_call

    addrs = [ipaddress.ip_address(s) for s in servers]
    body = [(socket.AF_INET if a.version == 4 else socket.AF_INET6, a.packed) for a in addrs]
    return new_method_call(_addr(PATH, MANAGER), "SetLinkDNS", "ia(iay)", (ifindex, body))


def set_link_domains(ifindex: int, domains: list[str]) -> Any:
    """Manager.SetLinkDomains(ifindex, [(domain, routing only)]): '~lab' routes only."""
    from jeepney import new_method_call

    body = [(d.removeprefix("~"), d.startswith("~")) for d in domains]
    return new_method_call(_addr(PATH, MANAGER), "SetLinkDomains", "ia(sb)", (ifindex, body))


def get_link(ifindex: int) -> Any:
    from jeepney import new_method_call

    return new_method_call(_addr(PATH, MANAGER), "GetLink", "i", (ifindex,))


def get_property(path: str, name: str) -> Any:
    from jeepney import new_method_call

    return new_method_call(_addr(path, "org.freedesktop.DBus.Properties"), "Get", "ss",
                           (LINK, name))


def name_has_owner() -> Any:
    from jeepney import new_method_call

    return new_method_call(_addr("/org/freedesktop/DBus", "org.freedesktop.DBus",
                                 "org.freedesktop.DBus"), "NameHasOwner", "s", (BUS_NAME,))


def call(msg: Any) -> tuple[Any, ...]:
    """Send one message on the system bus; its reply's body."""
    from jeepney import MessageType
    from jeepney.io.blocking import open_dbus_connection

    try:
        with open_dbus_connection(bus="SYSTEM") as conn:
            reply = conn.send_and_get_reply(msg, timeout=5)
    except (OSError, KeyError, TimeoutError) as e:
        raise ResolvedError(f"cannot reach the system D-Bus: {e}") from None
    if reply.header.message_type == MessageType.error:
        raise ResolvedError(f"systemd-resolved: {reply.body[0] if reply.body else reply}")
    return tuple(reply.body)


def running() -> bool:
    """Does systemd-resolved own its name on the system bus?"""
    try:
        return bool(call(name_has_owner())[0])
    except ResolvedError:
        return False


def link_dns(bridge: str) -> LinkDns:
    """What resolved holds for the link now (nothing when it has no such link)."""
    try:
        path = call(get_link(socket.if_nametoindex(bridge)))[0]
        servers = call(get_property(path, "DNS"))[0][1]
        domains = call(get_property(path, "Domains"))[0][1]
    except (OSError, ResolvedError):
        return LinkDns()
    return link_view(servers, domains)


def link_view(servers: list[tuple[int, bytes]], domains: list[tuple[str, bool]]) -> LinkDns:
    """resolved's DNS (a(iay)) and Domains (a(sb)) properties as a LinkDns."""
    return LinkDns(tuple(str(ipaddress.ip_address(bytes(b))) for _, b in servers),
                   tuple(("~" if route else "") + d for d, route in domains))


def set_link(bridge: str, want: LinkDns) -> None:
    """Give the bridge its DNS servers and domains in resolved."""
    ifindex = socket.if_nametoindex(bridge)
    call(set_link_dns(ifindex, list(want.servers)))
    call(set_link_domains(ifindex, list(want.domains)))

"""The dnsmasq options kvmnet writes itself into libvirt's `<dnsmasq:options>`: the
records libvirt's DNS XML has no element for.

Only four kinds, each built from typed values and nothing else, never free text:

    address=/DOMAIN/IP       a wildcard: every name in DOMAIN answers IP (dns.wildcards)
    cname=NAME,TARGET        an alias of a name dnsmasq knows (dns.cnames)
    ptr-record=REVERSE,NAME  the reverse name of a DHCP reservation (dns.ptr)
    local=/DOMAIN/           DOMAIN answered locally only (a forwarder with addr: none)

Why local= and not libvirt's <forwarder domain='D'/>: libvirt documents that form as
"resolved locally", but writes server=/D/#, and '#' is dnsmasq's "the usual servers":
seen with libvirt 9.0 and dnsmasq 2.90, the domain's names went upstream.

Each value passes render.guard before it is written (a DNS name holds nothing of
dnsmasq's syntax, an address no scope id), whatever the model it came from: libvirt
writes each option as one line of dnsmasq's config file, and dnsmasq runs as root.
parse.network reads these options back into the model (`recognise`); every other
option stays verbatim in xml_extra, as `kvmnet import` found it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from kvmnet.model.spec import DhcpHost, Network
from kvmnet.model.types import DNS_NAME_RE
from kvmnet.render.guard import require_address, require_dns_name

DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"
OPTIONS = f"{{{DNSMASQ_NS}}}options"
OPTION = f"{{{DNSMASQ_NS}}}option"
_WHAT = "dnsmasq option"


def ptr_target(h: DhcpHost, domain: str | None) -> str | None:
    """The name a reservation's PTR record points to: NAME.DOMAIN (dnsmasq registers
    the reservation's name in the network's domain), or NAME without a domain."""
    if not h.name:
        return None
    return f"{h.name}.{domain}" if domain else h.name


def ptr_options(hosts: Iterable[DhcpHost], domain: str | None) -> list[str]:
    out = []
    for h in hosts:
        target = ptr_target(h, domain)
        if target is None:
            continue
        require_address(_WHAT, h.ip)
        require_dns_name(_WHAT, target, h.ip.reverse_pointer)
        out.append(f"ptr-record={h.ip.reverse_pointer},{target}")
    return out


def options(net: Network, hosts: Iterable[DhcpHost]) -> list[str]:
    """The options for a network, in the order they are written; `hosts` are its DHCP
    reservations (every IP block's, the guests' included)."""
    dns = net.dns
    if dns is None:
        return []
    out = []
    for w in dns.wildcards:
        require_dns_name(_WHAT, w.domain)
        require_address(_WHAT, w.ip)
        out.append(f"address=/{w.domain}/{w.ip}")
    for c in dns.cnames:
        require_dns_name(_WHAT, c.name, c.target)
        out.append(f"cname={c.name},{c.target}")
    if dns.ptr:
        out += ptr_options(hosts, net.domain)
    for f in dns.forwarders:
        if f.local_only:
            require_dns_name(_WHAT, f.domain)
            out.append(f"local=/{f.domain}/")
    return out


def _name(text: str) -> str | None:
    return text if DNS_NAME_RE.match(text) and len(text) <= 253 else None


def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return None if str(addr) != text else addr


def recognise(option: str) -> tuple[str, tuple[str, ...]] | None:
    """('address', (domain, ip)), ('cname', (name, target)), ('ptr', (reverse, name))
    or ('local', (domain,)) for an option exactly as `options` writes it; None for any
    other."""
    key, eq, value = option.partition("=")
    if not eq:
        return None
    if key == "local":
        parts = value.split("/")
        if len(parts) == 3 and parts[0] == parts[2] == "" and _name(parts[1]):
            return "local", (parts[1],)
    elif key == "address":
        parts = value.split("/")
        if len(parts) == 3 and parts[0] == "" and _name(parts[1]) and _addr(parts[2]):
            return "address", (parts[1], parts[2])
    elif key in ("cname", "ptr-record"):
        parts = value.split(",")
        if len(parts) == 2 and all(_name(p) for p in parts):
            return ("cname" if key == "cname" else "ptr"), (parts[0], parts[1])
    return None

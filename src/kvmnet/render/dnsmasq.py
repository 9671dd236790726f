"""The dnsmasq options kvmnet writes itself into libvirt's `<dnsmasq:options>`: the
records libvirt's DNS XML has no element for.

Only five kinds, each built from typed values and nothing else, never free text:

    address=/DOMAIN/IP       a wildcard: every name in DOMAIN answers IP (dns.wildcards)
    cname=NAME,TARGET        an alias of a name dnsmasq knows (dns.cnames)
    ptr-record=REVERSE,NAME  the reverse name of a DHCP reservation (dns.ptr)
    local=/DOMAIN/           DOMAIN answered locally only (a forwarder with addr: none)
    dhcp-range=NET,ra-only,64  SLAAC beside DHCPv6 on an IPv6 block (ipv6.slaac: true)

Why the last one: libvirt advertises an IPv6 block with DHCPv6 (a range or
reservations) as "managed" only (dnsmasq's enable-ra with a stateful range: the M flag,
no autonomous prefix), and one without DHCPv6 as SLAAC only (its own
`dhcp-range=ADDR,ra-only`); it has no XML for both. A second, RA-only range on the same
prefix makes dnsmasq advertise the prefix as autonomous too (the A flag) while the first
range still serves DHCPv6: the guest gets both addresses.

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
from collections.abc import Iterable, Sequence

from kvmnet.errors import RenderError
from kvmnet.model.spec import DhcpHost, IPConfig, Network
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


def slaac_option(ipc: IPConfig, hosts: Sequence[DhcpHost]) -> str | None:
    """The RA-only range that adds SLAAC to an IPv6 block with DHCPv6 (`hosts`: its
    reservations, the guests' included); None where libvirt's own lines say it all."""
    iface = ipc.address
    if iface.version != 6 or ipc.slaac is not True or not (ipc.dhcp or hosts):
        return None
    net = iface.network
    require_address(_WHAT, net.network_address)
    if net.prefixlen != 64:   # check() refuses it first; SLAAC makes /64 addresses only
        raise RenderError(f"{_WHAT}: SLAAC on {net} needs a /64 prefix")
    return f"dhcp-range={net.network_address},ra-only,{net.prefixlen}"


def options(net: Network, hosts: Iterable[DhcpHost],
            blocks: Sequence[Sequence[DhcpHost]] | None = None) -> list[str]:
    """The options for a network, in the order they are written; `hosts` are its DHCP
    reservations (every IP block's, the guests' included), `blocks` the same per IP
    block in all_ips() order (default: each block's own `hosts:`)."""
    ips = net.all_ips()
    per_block = blocks if blocks is not None else [c.hosts for c in ips]
    out = [o for c, hs in zip(ips, per_block, strict=True)
           if (o := slaac_option(c, hs)) is not None]
    dns = net.dns
    if dns is None:
        return out
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
    """('address', (domain, ip)), ('cname', (name, target)), ('ptr', (reverse, name)),
    ('local', (domain,)) or ('slaac', (network address, prefix length)) for an option
    exactly as `options` writes it; None for any other."""
    key, eq, value = option.partition("=")
    if not eq:
        return None
    if key == "dhcp-range":
        parts = value.split(",")
        if (len(parts) == 3 and parts[1] == "ra-only" and parts[2] == "64"
                and isinstance(a := _addr(parts[0]), ipaddress.IPv6Address)
                and a.scope_id is None):
            return "slaac", (parts[0], parts[2])
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

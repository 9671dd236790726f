"""Checks of a network's DNS: names as RFC 1123 has them, forwarders that would loop
back to the network's own dnsmasq, and records that shadow a DHCP reservation's name."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from kvmnet.model.derive import dhcp_hosts
from kvmnet.model.spec import Dns, Network, Spec
from kvmnet.spec.checks.network import ip_blocks
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def rfc1123_problem(name: str) -> str | None:
    """Why `name` is no host name as RFC 1123 has it (labels of letters, digits and
    '-', not at either end, 1-63 characters, 253 in all); None when it is one."""
    if len(name) > 253:
        return "it is longer than 253 characters"
    for label in name.removesuffix(".").split("."):
        if not label:
            return "it has an empty label ('..', or a leading '.')"
        if not _LABEL.match(label):
            if len(label) > 63:
                return f"its label {label[:20]!r}... is longer than 63 characters"
            return (f"its label {label!r} holds a character other than a letter, digit "
                    "or '-', or starts or ends with '-'")
    return None


def _names(name: str, net: Network) -> Iterator[tuple[Path_, str]]:
    """Every host name the spec writes into this network's DNS, where it is written."""
    base: Path_ = ("networks", name)
    if net.domain:
        yield base + ("domain",), net.domain
    for bp, ipc in ip_blocks(net):
        yield from ((base + bp + ("hosts", i, "name"), h.name)
                    for i, h in enumerate(ipc.hosts) if h.name)
    if net.dns is not None:
        yield from _dns_names(base + ("dns",), net.dns)


def _dns_names(d: Path_, dns: Dns) -> Iterator[tuple[Path_, str]]:
    for i, host in enumerate(dns.hosts):
        for k, n in enumerate(host.names):
            yield d + ("hosts", i, "names", k), n
    for i, f in enumerate(dns.forwarders):
        if f.domain and f.domain != ".":
            yield d + ("forwarders", i, "domain"), f.domain
    for i, s in enumerate(dns.srv):
        if s.target and s.target != ".":
            yield d + ("srv", i, "target"), s.target
        if s.domain:
            yield d + ("srv", i, "domain"), s.domain
    for i, w in enumerate(dns.wildcards):
        yield d + ("wildcards", i, "domain"), w.domain
    for i, c in enumerate(dns.cnames):
        yield d + ("cnames", i, "name"), c.name
        yield d + ("cnames", i, "target"), c.target


def dns(f: Findings, spec: Spec, name: str, net: Network) -> None:
    for path, n in _names(name, net):
        why = rfc1123_problem(n)
        if why:
            f.error(path, f"{n!r} is not a host name (RFC 1123): {why}; write letters, "
                    "digits and '-' between dots, e.g. web-1.lab.example")
    _loops(f, spec, name, net)
    _shadows(f, spec, name, net)


def guest_names(f: Findings, spec: Spec) -> None:
    """A guest with an `ipv4:` on a network registers its own name by DHCP: warn when
    that is no host name (the guest's name is libvirt's domain name, not chosen for DNS).
    One walk of the guests for the whole spec (each NIC is on one network)."""
    for gname, guest in spec.guests.items():
        nics = [(i, nic.network) for i, nic in enumerate(guest.interfaces)
                if nic.ipv4 is not None and nic.network in spec.networks]
        why = rfc1123_problem(gname) if nics else None
        if why is None:
            continue
        for i, name in nics:
            f.warn(("guests", gname, "interfaces", i, "ipv4"),
                   f"guest {gname} is registered in network {name}'s DNS by its name, "
                   f"which is not a host name (RFC 1123): {why}; dnsmasq may not "
                   "answer it")


def _own_addresses(net: Network) -> set[object]:
    return {c.address.ip for c in net.all_ips()}


def _loops(f: Findings, spec: Spec, name: str, net: Network) -> None:
    """A forwarder at the network's own address asks dnsmasq itself; one at the host's
    stub resolver (a loopback address) while host.resolve_guests sends the network's
    domain to this dnsmasq asks it again for every name of the domain it cannot answer."""
    if net.dns is None:
        return
    own = _own_addresses(net)
    for i, fw in enumerate(net.dns.forwarders):
        path: Path_ = ("networks", name, "dns", "forwarders", i, "addr")
        if fw.addr is None:
            continue
        if fw.addr in own:
            f.error(path, f"{fw.addr} is network {name}'s own address: its dnsmasq would "
                    "forward to itself (a loop); name an upstream server, or write addr: "
                    "none to answer the domain locally only")
        elif (isinstance(fw.addr, ipaddress.IPv4Address | ipaddress.IPv6Address)
              and fw.addr.is_loopback and spec.host.resolve_guests and net.domain
              and not net.domain_local and _covers(fw.domain, net.domain)):
            f.error(path, f"{fw.addr} is the host's own resolver, and host.resolve_guests "
                    f"sends {net.domain} back to this network's dnsmasq: a name of "
                    f"{net.domain} it does not know would go round (a loop); set "
                    "domain_local: true, or name an upstream server",
                    refs=[("host", "resolve_guests")])


def _covers(fwd_domain: str | None, domain: str) -> bool:
    """Would a forwarder for `fwd_domain` (None: all names) get names of `domain`?"""
    if fwd_domain is None or fwd_domain == ".":
        return True
    a, b = fwd_domain.lower().rstrip("."), domain.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _shadows(f: Findings, spec: Spec, name: str, net: Network) -> None:
    """A DNS host or alias with a reservation's name (NAME or NAME.DOMAIN) answers in
    its place, with another address or none of its own."""
    if net.dns is None or net.mode not in ("nat", "route", "open", "isolated"):
        return
    registered: dict[str, object] = {}
    for hosts in dhcp_hosts(spec, name).values():
        for h in hosts:
            if h.name:
                registered[h.name.lower()] = h.ip
                if net.domain:
                    registered[f"{h.name}.{net.domain}".lower()] = h.ip
    d: Path_ = ("networks", name, "dns")
    for i, host in enumerate(net.dns.hosts):
        for k, n in enumerate(host.names):
            ip = registered.get(n.lower())
            if ip is not None and ip != host.ip:
                f.warn(d + ("hosts", i, "names", k), f"{n} is the name of the DHCP "
                       f"reservation {ip}; this DNS host answers {host.ip} for it instead: "
                       "rename one of them")
    for i, c in enumerate(net.dns.cnames):
        ip = registered.get(c.name.lower())
        if ip is not None:
            f.warn(d + ("cnames", i, "name"), f"{c.name} is the name of the DHCP reservation "
                   f"{ip}; this alias hides it: rename one of them")

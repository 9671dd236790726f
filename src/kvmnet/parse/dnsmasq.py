"""libvirt's <dnsmasq:options> -> the DNS records kvmnet writes there itself
(render.dnsmasq): wildcards, aliases and the reservations' PTR records. Every other
option is left for xml_extra, verbatim."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from kvmnet.model.spec import DhcpHost, Dns, DnsCname, DnsForwarder, DnsWildcard, IPConfig
from kvmnet.render.dnsmasq import OPTION, ptr_options, recognise
from kvmnet.render.xmlutil import Element


@dataclass
class Options:
    """What one <dnsmasq:options> holds: kvmnet's records, and an element with the
    options that are not kvmnet's (None when there are none)."""

    wildcards: list[DnsWildcard] = field(default_factory=list)
    cnames: list[DnsCname] = field(default_factory=list)
    ptr: bool | None = None
    local: list[DnsForwarder] = field(default_factory=list)
    slaac: list[str] = field(default_factory=list)   # IPv6 network addresses (/64)
    rest: Element | None = None

    def any(self) -> bool:
        return bool(self.wildcards or self.cnames or self.ptr or self.local)


def _slaac_block(ips: Sequence[IPConfig], network: str) -> int | None:
    """The index of the IPv6 /64 block with DHCPv6 whose network address is `network`."""
    for i, c in enumerate(ips):
        n = c.address.network
        if (n.version == 6 and n.prefixlen == 64 and str(n.network_address) == network
                and (c.dhcp or c.hosts)):
            return i
    return None


def read_options(el: Element, hosts: Iterable[DhcpHost], domain: str | None,
                 ips: Sequence[IPConfig] = ()) -> Options:
    """kvmnet's options out of `el`; PTR records count as `ptr: true` only when they are
    exactly those of the reservations `hosts` in `domain`, else they stay verbatim; an
    RA-only range counts as `slaac: true` of the block `ips` holds it for."""
    out = Options()
    rest: list[Element] = []
    ptrs: list[Element] = []
    for opt in el:
        if not isinstance(opt.tag, str):
            continue
        found = recognise(opt.get("value") or "") if opt.tag == OPTION else None
        if found is None or len(opt.attrib) != 1 or len(opt):
            rest.append(opt)
        elif found[0] == "address":
            out.wildcards.append(DnsWildcard(domain=found[1][0], ip=found[1][1]))
        elif found[0] == "local":
            out.local.append(DnsForwarder(domain=found[1][0], local_only=True))
        elif found[0] == "cname":
            out.cnames.append(DnsCname(name=found[1][0], target=found[1][1]))
        elif found[0] == "slaac" and _slaac_block(ips, found[1][0]) is not None:
            out.slaac.append(found[1][0])
        elif found[0] == "slaac":
            rest.append(opt)   # no block with DHCPv6 of that prefix: not kvmnet's
        else:
            ptrs.append(opt)
    if ptrs:
        want = sorted(ptr_options(hosts, domain))
        if sorted(str(p.get("value")) for p in ptrs) == want:
            out.ptr = True
        else:
            rest += ptrs
    if rest:
        keep = etree.Element(el.tag, nsmap={k: v for k, v in el.nsmap.items() if k})
        for opt in el:  # in their order
            if any(opt is x for x in rest):
                keep.append(copy.deepcopy(opt))
        out.rest = keep
    return out


def options_into(el: Element, f: dict[str, Any]) -> Element | None:
    """Read `el` into the fields `f` of a network being parsed (its IP blocks and
    domain already read); the element to keep verbatim, if any."""
    ips = [c for c in (f.get("ipv4"), f.get("ipv6")) if c] + list(f.get("more_ips", []))
    o = read_options(el, (h for c in ips for h in c.hosts), f.get("domain"), ips)
    for network in o.slaac:
        _set_slaac(f, network)
    if o.any():
        dns = f.get("dns") or Dns()
        f["dns"] = dns.model_copy(update={
            "wildcards": o.wildcards, "cnames": o.cnames, "ptr": o.ptr,
            "forwarders": list(dns.forwarders) + o.local})
    return o.rest


def _set_slaac(f: dict[str, Any], network: str) -> None:
    """slaac: true on the block (ipv6, or one of more_ips) of that /64."""
    if f.get("ipv6") is not None and _slaac_block([f["ipv6"]], network) is not None:
        f["ipv6"] = f["ipv6"].model_copy(update={"slaac": True})
        return
    more = list(f.get("more_ips", []))
    i = _slaac_block(more, network)
    if i is not None:
        more[i] = more[i].model_copy(update={"slaac": True})
        f["more_ips"] = more

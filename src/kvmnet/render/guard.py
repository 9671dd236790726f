"""The second wall: a renderer of a line-oriented format writes no value that could
start a line, key, section or command of its own.

The spec's value types are the first wall (a control character or an IPv6 scope id is
refused where it is written). But a renderer also gets models that skipped validation
(`model_construct`, a live state read in lax mode, a field typed too loosely one day),
and what it writes is run or read line by line: ifupdown's `post-up` lines by /bin/sh
at boot, NetworkManager keyfiles and networkd units (a line break starts a key or a
section), nft and iptables-restore scripts, the static routes a user pastes into a
router. So each such renderer passes what it is about to write through require_one_line
first, and raises RenderError (writing nothing) on:

- a character that is not one line of visible text (model.types: control characters,
  line and paragraph separators, format characters);
- an IPv6 address, interface or network with a scope id (`fe80::1%...`): ipaddress keeps
  any text there, and `$(...)` or `;` in it is no control character.

dnsmasq's options (`<dnsmasq:options>`, render.dnsmasq) are one line each, and inside
one, `/`, `,`, `=`, `#` and white space are its syntax: require_dns_name refuses a name
that holds anything but ASCII letters, digits, '-', '_' and '.', before it is written.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator, Mapping

from pydantic import BaseModel

from kvmnet.errors import RenderError
from kvmnet.model.types import DNS_NAME_RE, not_one_line, scope_of

_ADDRESS = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
            ipaddress.IPv6Network)


def require_one_line(what: str, *values: object) -> None:
    """Raise RenderError if any value, or anything inside it (models, dataclasses,
    mappings' keys and values, sequences), could break a line-oriented file. `what`
    names the artefact for the message."""
    for v in _scalars(values):
        if isinstance(v, _ADDRESS) and scope_of(v) is not None:
            raise RenderError(f"{what}: not writing the address {str(v)!r}: it has a scope "
                              "id (text after '%'), which nothing kvmnet writes may carry")
        text = v if isinstance(v, str) else str(v)
        why = not_one_line(text)
        if why:
            raise RenderError(f"{what}: not writing {text!r}: it contains {why}, which "
                              "would start a line of its own")


def _scalars(v: object) -> Iterator[object]:
    """Every leaf value inside v."""
    if v is None or isinstance(v, bool | int | float):
        return
    if isinstance(v, (str, *_ADDRESS)):   # (an interface is an address too)
        yield v
    elif isinstance(v, BaseModel):
        for name in type(v).model_fields:
            yield from _scalars(getattr(v, name, None))
    elif dataclasses.is_dataclass(v) and not isinstance(v, type):
        for f in dataclasses.fields(v):
            yield from _scalars(getattr(v, f.name))
    elif isinstance(v, Mapping):
        for k, x in v.items():
            yield from _scalars(k)
            yield from _scalars(x)
    elif isinstance(v, list | tuple | set | frozenset):
        for x in v:
            yield from _scalars(x)
    else:
        yield v


def require_dns_name(what: str, *names: object) -> None:
    """Raise RenderError unless each value is a DNS name as dnsmasq reads it (ASCII
    letters, digits, '-', '_', '.', at most 253 characters): nothing of dnsmasq's own
    syntax ('/', ',', '=', '#', white space) or a line break can be inside it."""
    for n in names:
        text = n if isinstance(n, str) else str(n)
        if not (isinstance(n, str) and (text == "." or DNS_NAME_RE.match(text))
                and len(text) <= 253):
            raise RenderError(f"{what}: not writing {text!r}: a DNS name there holds only "
                              "ASCII letters, digits, '-', '_' and '.'")


def require_address(what: str, *values: object) -> None:
    """Raise RenderError unless each value is an IP address without a scope id."""
    for v in values:
        if not isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise RenderError(f"{what}: not writing {v!r}: an IP address belongs there")
        require_one_line(what, v)


def require_ifname(what: str, *names: object) -> None:
    """Raise RenderError unless each value is a Linux interface name as the spec takes
    it (model.types.parse_ifname: ASCII letters, digits, '-', '_', '.', '@', '+'):
    ifupdown's hooks and `post-up` lines hand names to /bin/sh."""
    from kvmnet.model.types import parse_ifname

    for n in names:
        try:
            parse_ifname(n)
        except ValueError as e:
            raise RenderError(f"{what}: not writing {n!r}: {e}") from None


def require_host_links(what: str, host: object) -> None:
    """The second wall for host.bonds and host.vlans (a Host): every name an interface
    name, every bond option one of the values kvmnet knows, every VLAN id 1-4094, every
    number an int, before any of it reaches a config file."""
    from kvmnet.model.hostlink import BOND_MODES, XMIT_HASH_POLICIES

    bonds = getattr(host, "bonds", {})
    vlans = getattr(host, "vlans", {})
    for name, bond in bonds.items():
        require_ifname(what, name, *bond.ports, *([bond.primary] if bond.primary else []))
        _choice(what, bond.mode, BOND_MODES)
        _choice(what, bond.lacp_rate, ("slow", "fast", None))
        _choice(what, bond.xmit_hash_policy, (*XMIT_HASH_POLICIES, None))
        _number(what, bond.miimon, 0, 60000)
    for name, v in vlans.items():
        require_ifname(what, name, v.link)
        _number(what, v.id, 1, 4094)


def require_vlan_ids(what: str, *ids: object) -> None:
    """Raise RenderError unless each value is a VLAN id, an int 1-4094."""
    for i in ids:
        _number(what, i, 1, 4094)


def _choice(what: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise RenderError(f"{what}: not writing {value!r}: one of "
                          f"{', '.join(str(a) for a in allowed if a)} belongs there")


def _number(what: str, value: object, low: int, high: int) -> None:
    if not (type(value) is int and low <= value <= high):
        raise RenderError(f"{what}: not writing {value!r}: a whole number {low}-{high} "
                          "belongs there")


def require_vlan(v: object, what: str = "VLAN") -> int:
    """v itself when it is a VLAN id (an int 1-4094, not a bool), else RenderError: a
    value that reaches libvirt's XML, kvmnet's domain record or a bridge port's VLAN table
    is checked again where it is written."""
    require_vlan_ids(what, v)
    assert isinstance(v, int)
    return v

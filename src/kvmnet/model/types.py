"""Value types of the spec: addresses, ranges, MACs, names.

Each parser raises ValueError with a message that says what was expected,
so the loader can print it next to FILE:LINE:COL. The parsers are pydantic's plain
validators of these types (they take any input and do the whole check, in strict and
lax mode alike) or, for the kinds of text, after-validators of a checked str.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import lru_cache
from typing import Annotated, Any, NamedTuple, TypeVar

from pydantic import (
    AfterValidator,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    WithJsonSchema,
)

from kvmnet.model import value_schema as js

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}\Z")
# libvirt's own rule for network names is loose; we keep to what is safe in
# file names, shell words and bridge names: letters, digits, '-', '_', '.'.
# \Z, not $: '$' also matches before a trailing newline ("web1\n").
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# Linux refuses '/', ':' and white space in interface names; a leading '-' would read
# as an option to the tools that get the name.
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@+][A-Za-z0-9_.@+-]*\Z")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_.-]")
_MAC_CHAR = re.compile(r"[0-9a-f:-]")
_IFNAME_CHAR = re.compile(r"[A-Za-z0-9_.@+-]")


def _bad_char(value: str, ok: re.Pattern[str]) -> str:
    """Name the first character that is not allowed, e.g. a Cyrillic 'а' that looks Latin."""
    for ch in value:
        if not ok.fullmatch(ch):
            what = unicodedata.name(ch, "a control character")
            return f"the character {ch!r}, U+{ord(ch):04X} {what}, is not allowed"
    return ""


def _paren(text: str) -> str:
    return f" ({text})" if text else ""


def parse_mac(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 60:
        # YAML 1.1 reads an unquoted all-digit MAC as a base-60 number: undo that.
        digits, n = [], value
        while n:
            n, d = divmod(n, 60)
            digits.append(f"{d:02d}")
        text = ":".join(reversed(digits))
        raise ValueError(
            f"a MAC address must be quoted: unquoted, YAML reads {text} as the number "
            f"{value}; write \"{text}\""
        )
    if not isinstance(value, str):
        raise ValueError(
            f"a MAC address must be a quoted string like \"52:54:00:12:34:56\", not {value!r}"
        )
    mac = value.strip().lower()
    if not _MAC_RE.match(mac):
        raise ValueError(
            f"{value!r} is not a MAC address{_paren(_bad_char(mac, _MAC_CHAR))}: write six "
            "hex pairs separated by ':', e.g. \"52:54:00:12:34:56\""
        )
    return mac.replace("-", ":")


@lru_cache(maxsize=1 << 14)
def ip_address(text: str) -> IPAddr:
    """ipaddress.ip_address, remembered: a plan reads the same addresses three times
    (the spec, its XML read back, the live XML), and the address objects are immutable."""
    return ipaddress.ip_address(text)


def scope_of(value: object) -> str | None:
    """The IPv6 scope id (the text after '%') an address, interface or network carries."""
    if isinstance(value, ipaddress.IPv6Network):
        return value.network_address.scope_id
    if isinstance(value, ipaddress.IPv6Address):   # (IPv6Interface is one too)
        return value.scope_id
    return None


_Scoped = TypeVar("_Scoped", IPAddr, IPIface, IPNet)


def _unscoped(found: _Scoped, value: Any, bare: str | None = None) -> _Scoped:
    """Refuse a scope id: ipaddress keeps any text after '%' (line breaks, `$(...)`,
    braces), and it would reach ifupdown's shell lines, keyfiles, nft rules and the
    plan. No spec field needs one: an address is used on the bridge or network it is
    written under, which is its scope (a link-local gateway of br0 is reached on br0)."""
    scope = scope_of(found)
    if scope is None:
        return found
    bare = bare or str(found).replace(f"%{scope}", "", 1)
    shown = value if isinstance(value, str) else str(found)
    raise ValueError(f"{shown!r} has a scope id ({'%' + scope!r}): an address here is used "
                     f"on the bridge or network it is written under, which is its scope: "
                     f"write {bare!r}")


def parse_ip(value: Any) -> IPAddr:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return _unscoped(value, value)
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address like 192.168.122.10, not {value!r}")
    try:
        found = ip_address(value.strip())
    except ValueError:
        pass
    else:
        return _unscoped(found, value)
    if "/" in value:
        raise ValueError(
            f"{value!r} has a prefix length; write the bare address {value.split('/')[0]!r}"
        )
    raise ValueError(f"{value!r} is not an IP address: write e.g. 192.168.122.10 or fd00::10")


def parse_iface(value: Any) -> IPIface:
    """A host address with its prefix: 192.168.122.1/24."""
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return _unscoped(value, value)
    if not isinstance(value, str):
        raise ValueError(f"expected an address with prefix like 192.168.122.1/24, not {value!r}")
    text = value.strip()
    if "/" not in text:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            raise ValueError(
                f"{value!r} has no prefix length: write it as address/prefix, "
                f"e.g. {text}/24"
            )
    addr, _, plen = text.partition("/")
    if plen and not plen.isdigit():
        # A netmask (the seed's ifupdown habit) is a common slip: say the fix.
        try:
            mask = ipaddress.IPv4Address(plen)
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        except ValueError:
            pass
        else:
            raise ValueError(f"{value!r} uses a netmask: write {addr}/{prefix}")
    try:
        found = ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an address with prefix: write e.g. 192.168.122.1/24"
        ) from None
    return _unscoped(found, value)


def parse_net(value: Any) -> IPNet:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return _unscoped(value, value)
    if not isinstance(value, str):
        raise ValueError(f"expected a subnet like 10.0.0.0/8, not {value!r}")
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
        _unscoped(ipaddress.ip_interface(value.strip()), value)   # (strict=False drops it)
    except ValueError as e:
        if "scope id" in str(e):
            raise
        raise ValueError(f"{value!r} is not a subnet: write e.g. 10.0.0.0/8") from None
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        raise ValueError(f"{value!r} has host bits set: write {net}") from None


class IPRange(NamedTuple):
    start: IPAddr
    end: IPAddr

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        if addr.version != self.start.version:
            return False
        return int(self.start) <= int(addr) <= int(self.end)

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1


def parse_range(value: Any) -> IPRange:
    if isinstance(value, IPRange):
        return _unscoped_range(value.start, value.end, value)
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}-{value[1]}"
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(
            f"expected a range written START-END like 192.168.122.2-192.168.122.254, "
            f"not {value!r}"
        )
    a, b = (p.strip() for p in value.split("-"))
    try:
        start, end = ip_address(a), ip_address(b)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a range of two addresses: write START-END, "
            "e.g. 192.168.122.2-192.168.122.254"
        ) from None
    if start.version != end.version:
        raise ValueError(f"{value!r} mixes IPv4 and IPv6")
    return _unscoped_range(start, end, value)


def _unscoped_range(start: IPAddr, end: IPAddr, value: Any) -> IPRange:
    bare = "-".join(str(a).split("%", 1)[0] for a in (start, end))
    return IPRange(_unscoped(start, value, bare), _unscoped(end, value, bare))


class PortRange(NamedTuple):
    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last


def parse_ports(value: Any) -> PortRange:
    if isinstance(value, PortRange):
        return value
    if type(value) is tuple and len(value) == 2 and all(type(p) is int for p in value):
        value = f"{value[0]}-{value[1]}"   # (first, last): model_dump's python mode
    if isinstance(value, bool):
        raise ValueError(f"expected a port number or range like 8000-8010, not {value!r}")
    if isinstance(value, int):
        first = last = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+(-[0-9]+)?", value.strip(), re.ASCII):
        a, _, b = value.strip().partition("-")
        first = int(a)
        last = int(b) if b else first
    else:
        raise ValueError(f"expected a port number or range like 8000-8010, not {value!r}")
    for p in (first, last):
        if not 1 <= p <= 65535:
            raise ValueError(f"port {p} is out of range: ports are 1-65535")
    if last < first:
        raise ValueError(f"port range {value!r} is reversed: write {last}-{first}")
    return PortRange(first, last)


def parse_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a name must be a string, not {value!r}")
    if not NAME_RE.match(value) or len(value) > 64:
        raise ValueError(
            f"{value!r} is not a usable name{_paren(_bad_char(value, _NAME_CHAR))}: use ASCII "
            "letters, digits, '-', '_' and '.', start with a letter or digit, at most 64 "
            "characters"
        )
    return value


def parse_ifname(value: Any) -> str:
    """A Linux interface name: at most 15 bytes, no '/', ':' or spaces."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"an interface name must be a non-empty string, not {value!r}")
    bad = _bad_char(value, _IFNAME_CHAR)
    size = len(value.encode(errors="replace"))
    rule = "use ASCII letters, digits, '-', '_' and '.', not starting with '-'"
    if size > 15 and not bad:
        raise ValueError(
            f"interface name {value!r} is {size} bytes; Linux allows at most 15: "
            f"shorten it, e.g. {value.lstrip('-')[:15]!r}"
        )
    if size > 15:
        raise ValueError(f"interface name {value!r} is {size} bytes (Linux allows at most 15), "
                         f"and {bad}: {rule}")
    if bad or not IFNAME_RE.match(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not a valid interface name{_paren(bad)}: {rule}")
    if value.endswith("+"):
        # libvirt's iptables rules name bridges and uplinks: '-i virbr+' is every virbr*.
        raise ValueError(f"interface name {value!r} ends in '+', which iptables reads as a "
                         f"wildcard (every interface whose name starts with "
                         f"{value[:-1]!r}): remove the '+'")
    return value


def _text_in_json(v: Any, info: SerializationInfo) -> Any:
    """model_dump(mode="json") writes the value as the spec does ("10.0.0.1",
    "10.0.0.2-10.0.0.9", "8000-8010"); python mode keeps the address objects (pydantic
    makes the named tuples IPRange and PortRange plain pairs, which their parsers read)."""
    return str(v) if info.mode_is_json() else v


_AS_TEXT = PlainSerializer(_text_in_json)

# Each with the JSON Schema of what its parser takes (an editor's check while typing).
Mac = Annotated[str, PlainValidator(parse_mac), WithJsonSchema(js.MAC_SCHEMA)]
Name = Annotated[str, PlainValidator(parse_name), WithJsonSchema(js.NAME_SCHEMA)]
IfName = Annotated[str, PlainValidator(parse_ifname), WithJsonSchema(js.IFNAME_SCHEMA)]
Addr = Annotated[IPAddr, PlainValidator(parse_ip), _AS_TEXT, WithJsonSchema(js.ADDR_SCHEMA)]
Iface = Annotated[IPIface, PlainValidator(parse_iface), _AS_TEXT,
                  WithJsonSchema(js.IFACE_SCHEMA)]
Net = Annotated[IPNet, PlainValidator(parse_net), _AS_TEXT, WithJsonSchema(js.NET_SCHEMA)]
Range = Annotated[IPRange, PlainValidator(parse_range), _AS_TEXT,
                  WithJsonSchema(js.RANGE_SCHEMA)]
Ports = Annotated[PortRange, PlainValidator(parse_ports), _AS_TEXT,
                  WithJsonSchema(js.PORTS_SCHEMA)]


# Free text reaches libvirt and, through it, dnsmasq's config and hosts files, one
# option per line: a line break in a domain would start an option of the writer's
# choosing (dhcp-script=PROGRAM runs it). So no control, format or line-separator
# characters, no surrogates or non-characters (lxml cannot write those either).
_NOT_TEXT = {"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"}
DNS_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_DNS_CHAR = re.compile(r"[A-Za-z0-9_.-]")


def _char(ch: str) -> str:
    what = unicodedata.name(ch, "") or {
        "Cc": "a control character", "Cs": "a surrogate", "Cn": "not a character",
    }.get(unicodedata.category(ch), "an invisible character")
    return f"the character {ch!r}, U+{ord(ch):04X} {what}"


def not_one_line(value: str) -> str | None:
    """The first character of value that is not one line of visible text, described;
    None when there is none (render.guard asks the same of what it writes)."""
    for ch in value:
        if unicodedata.category(ch) in _NOT_TEXT:
            return _char(ch)
    return None


def parse_text(value: str) -> str:
    """One line of visible text (runs after the string type check)."""
    bad = not_one_line(value)
    if bad:
        raise ValueError(f"{value!r} contains {bad}: write one line of visible characters")
    return value


def parse_dns_name(value: str) -> str:
    """A DNS name or label as dnsmasq reads it: ASCII letters, digits, '-', '_', '.'
    ('.' alone is the root, as in an SRV target)."""
    if value == "." or (DNS_NAME_RE.match(value) and len(value) <= 253):
        return value
    bad = next((c for c in value if not _DNS_CHAR.fullmatch(c)), None)
    detail = f" ({_char(bad)}, is not allowed)" if bad else ""
    raise ValueError(f"{value!r} is not a DNS name{detail}: use ASCII letters, digits, '-', "
                     "'_' and '.', start with a letter, digit or '_', at most 253 characters")


Text = Annotated[str, AfterValidator(parse_text), WithJsonSchema(js.TEXT_SCHEMA)]
DnsName = Annotated[str, AfterValidator(parse_dns_name), WithJsonSchema(js.DNS_NAME_SCHEMA)]


_DUID_CHAR = re.compile(r"[0-9A-Fa-f:]")


def parse_duid(value: str) -> str:
    """A DHCPv6 client id (DUID) as libvirt takes it: hex digits and ':'."""
    value = parse_text(value)
    bad = next((c for c in value if not _DUID_CHAR.fullmatch(c)), None)
    if bad is not None or not value.strip(":"):
        detail = f" ({_char(bad)}, is not allowed)" if bad else ""
        raise ValueError(f"{value!r} is not a DHCP client id{detail}: write hex bytes "
                         "separated by ':', e.g. 0:3:0:1:52:54:0:0:0:31")
    return value


Duid = Annotated[str, AfterValidator(parse_duid), WithJsonSchema(js.DUID_SCHEMA)]

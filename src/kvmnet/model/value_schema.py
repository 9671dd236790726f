"""JSON Schemas of the spec's value types, whose text forms are regular expressions.

An editor (yaml-language-server) checks a spec with these while it is typed, so each
accepts exactly what its parser in `model.types` accepts, no more, no less: the
parsers stay the judges (their messages say what to write instead), and
tests/unit/test_value_schema.py holds each pattern to its parser. What a pattern
cannot say is named in its type's description: a subnet's host bits, a port range
written backwards, unassigned code points in text.

Every pattern is written in the subset that ECMAScript (with the `u` flag, as editors
compile them) and Python's `re` (the `jsonschema` package, the tests) read alike:
groups, classes, counted repeats, alternation, `(?!`, and literal characters rather
than escapes for anything beyond ASCII. `$` is followed by `(?!\\n)` where the parser
does not strip white space: Python's `$` also matches before a final newline.
"""

from __future__ import annotations

from typing import Any

# str.strip()'s white space (str.isspace), which the address, MAC, port and lease
# parsers drop around a value; ECMAScript's \s differs (it has U+FEFF, lacks U+001C-1F).
_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
WS = f"[{_SPACE}]*"
NOT_WS = f"[^{_SPACE}]"
END = "$(?!\n)"   # the end of the text, also for Python's re

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"   # no leading zeros (ipaddress)
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = "[0-9A-Fa-f]{1,4}"


def _ipv6() -> str:
    """RFC 4291 text, as ipaddress reads it: eight hextets, or fewer around one '::'
    that stands for at least one; the last two may be written as an IPv4 address."""
    forms = [f"(?:{_H}:){{7}}{_H}", f"(?:{_H}:){{6}}{IPV4}"]
    for n in range(8):          # n hextets before '::', at most 7 - n after it
        left = "" if n == 0 else f"(?:{_H}:){{{n - 1}}}{_H}"
        right = []
        if n <= 5:
            right.append(f"(?:{_H}:){{0,{5 - n}}}{IPV4}")
        if n <= 6:
            right.append(f"{_H}(?::{_H}){{0,{6 - n}}}")
        tail = f"(?:{'|'.join(right)})?" if right else ""
        forms.append(f"{left}::{tail}")
    return "(?:" + "|".join(forms) + ")"


IPV6 = _ipv6()
# No scope (fe80::1%eth0): the parsers refuse one (model.types._unscoped).
_PREFIX4 = "0*(?:3[0-2]|[12]?[0-9])"
_PREFIX6 = "0*(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])"


def _v4_masks() -> str:
    """Every IPv4 netmask and host mask: ipaddress takes both after a subnet's '/'."""
    masks = set()
    for plen in range(33):
        bits = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        for m in (bits, bits ^ 0xFFFFFFFF):
            masks.add(".".join(str(m >> s & 255) for s in (24, 16, 8, 0)))
    return "(?:" + "|".join(m.replace(".", r"\.") for m in sorted(masks)) + ")"


def _whole(body: str, strip: bool) -> str:
    return f"^{WS}(?:{body}){WS}$" if strip else f"^(?:{body}){END}"


ADDR = _whole(f"{IPV4}|{IPV6}", strip=True)
IFACE = _whole(f"{IPV4}/{_PREFIX4}|{IPV6}/{_PREFIX6}", strip=True)
NET = _whole(f"{IPV4}(?:/(?:{_PREFIX4}|{_v4_masks()}))?"
             f"|{IPV6}(?:/{_PREFIX6})?", strip=True)
RANGE = _whole(f"{IPV4}{WS}-{WS}{IPV4}"
               f"|{IPV6}{WS}-{WS}{IPV6}", strip=True)
MAC = _whole("[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}",
             strip=True)
_PORT = "0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}" \
        "|[1-9][0-9]{0,3})"
PORTS = _whole(f"{_PORT}(?:-{_PORT})?", strip=True)
LEASE = _whole("[Ii][Nn][Ff][Ii][Nn][Ii][Tt][Ee]|[0-9]+[SsMmHh]?", strip=True)
NAME = _whole("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", strip=False)
# not . or .., not ending in '+' (an iptables wildcard)
IFNAME = (f"^(?!\\.\\.?{END})(?!.*\\+{END})"
          f"(?:[A-Za-z0-9_.@+][A-Za-z0-9_.@+-]{{0,14}}){END}")
DNS_NAME = _whole(r"\.|[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}", strip=False)
DUID = _whole(":*[0-9A-Fa-f][0-9A-Fa-f:]*", strip=False)
OVSDB_REMOTE = _whole(f"unix:/{NOT_WS}+"
                      r"|(?:tcp|ssl):(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}",
                      strip=False)

# Text: no control, format or line/paragraph separator characters (Unicode categories
# Cc, Cf, Zl, Zp as of Unicode 14, Python 3.11's). The parser also refuses surrogates
# and unassigned code points, which a pattern cannot name for every Unicode version.
_NOT_TEXT = [(0x00, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C),
             (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2),
             (0x180E, 0x180E), (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064),
             (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
             (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3),
             (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F)]
TEXT = _whole("[^" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}"
                             for a, b in _NOT_TEXT) + "]*", strip=False)

_ADDR4 = _whole(IPV4, strip=True)
_ADDR6 = _whole(IPV6, strip=True)


def _string(title: str, pattern: str, description: str, example: str, hint: str
            ) -> dict[str, Any]:
    # patternErrorMessage: what VS Code's and yaml-language-server's validators say
    # instead of printing the pattern (other validators ignore unknown keywords).
    return {"type": "string", "title": title, "description": description,
            "pattern": pattern, "patternErrorMessage": hint, "examples": [example]}


NAME_SCHEMA = _string(
    "name", NAME, "ASCII letters, digits, '-', '_' and '.', starting with a letter or "
    "digit, at most 64 characters.", "web1", "a name: ASCII letters, digits, '-', '_' and "
    "'.', starting with a letter or digit, at most 64 characters")
IFNAME_SCHEMA = _string(
    "interface name", IFNAME, "A Linux interface name: at most 15 ASCII letters, digits "
    "and '-', '_', '.', '@', '+', not starting with '-', not ending in '+' (an iptables "
    "wildcard).", "br0",
    "an interface name: at most 15 letters, digits, '-', '_', '.', '@', '+' (not last)")
MAC_SCHEMA = _string(
    "MAC address", MAC, "Six hex pairs separated by ':' (or '-'). Quote it: YAML 1.1 reads "
    "an unquoted all-digit MAC as a number.", "52:54:00:12:34:56",
    'a MAC address like "52:54:00:12:34:56"')
ADDR_SCHEMA = _string(
    "IP address", ADDR, "An IPv4 or IPv6 address, without a prefix length.",
    "192.168.122.10", "an IP address like 192.168.122.10 or fd00::10, without a prefix")
IFACE_SCHEMA = _string(
    "address/prefix", IFACE, "An address with its prefix length, e.g. the host's address "
    "on a network and so the network's subnet. A netmask is not taken: write /24.",
    "192.168.122.1/24", "an address with its prefix length like 192.168.122.1/24")
NET_SCHEMA = _string(
    "subnet", NET, "A subnet: its network address and prefix length, with no host bits "
    "set (kvmnet validate checks that; it says what to write), or a single address.",
    "10.0.0.0/8", "a subnet like 10.0.0.0/8")
IPRANGE_SCHEMA = _string(
    "address range", RANGE, "START-END: the first and last address, of one family.",
    "192.168.122.2-192.168.122.254", "a range START-END like 192.168.122.2-192.168.122.254")
RANGE_SCHEMA: dict[str, Any] = {
    "title": "address range", "description": "START-END, or a list [START, END].",
    "examples": ["203.0.113.10-203.0.113.12"],
    "anyOf": [IPRANGE_SCHEMA] + [
        {"type": "array", "prefixItems": [{"type": "string", "pattern": p}] * 2,
         "items": False, "minItems": 2, "maxItems": 2} for p in (_ADDR4, _ADDR6)]}
PORTS_SCHEMA: dict[str, Any] = {
    "title": "port or range", "examples": [2222, "8000-8010"],
    "description": "A port number (1-65535), or a range FIRST-LAST, not reversed (kvmnet "
                   "validate checks the order).",
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535},
              {"type": "string", "pattern": PORTS,
               "patternErrorMessage": "a port (1-65535) or a range like 8000-8010"}]}
TEXT_SCHEMA = _string(
    "text", TEXT, "One line of visible text: no control or invisible formatting "
    "characters.", "/srv/tftp", "one line of visible text")
DNS_NAME_SCHEMA = _string(
    "DNS name", DNS_NAME, "A DNS name or label: ASCII letters, digits, '-', '_' and '.', "
    "starting with a letter, digit or '_', at most 253 characters ('.' alone: the root).",
    "example.lan", "a DNS name: letters, digits, '-', '_' and '.'")
DUID_SCHEMA = _string(
    "DHCP client id", DUID, "A DHCPv6 client id (DUID): hex bytes separated by ':'.",
    "0:3:0:1:52:54:0:0:0:31", "a DHCP client id like 0:3:0:1:52:54:0:0:0:31")
OVSDB_REMOTE_SCHEMA = _string(
    "OVSDB remote", OVSDB_REMOTE, "unix:/PATH, tcp:HOST:PORT or ssl:HOST:PORT, as "
    "ovn-nbctl --db takes it.", "tcp:10.0.0.5:6641",
    "unix:/PATH, tcp:HOST:PORT or ssl:HOST:PORT")
LEASE_FORMS: list[dict[str, Any]] = [
    {"type": "integer", "minimum": 0, "title": "a number of seconds"},
    {"type": "string", "pattern": LEASE, "title": "a duration (1h, 30m, 600s, infinite)",
     "patternErrorMessage": "a lease time like 1h, 30m, 600s, 3600 or infinite"}]

# The schemas the spec's JSON Schema names once under "definitions" and refers to.
DEFINITIONS: dict[str, dict[str, Any]] = {
    "Name": NAME_SCHEMA, "IfName": IFNAME_SCHEMA, "Mac": MAC_SCHEMA, "Addr": ADDR_SCHEMA,
    "Iface": IFACE_SCHEMA, "Net": NET_SCHEMA, "IPRange": IPRANGE_SCHEMA,
    "Range": RANGE_SCHEMA, "Ports": PORTS_SCHEMA, "Text": TEXT_SCHEMA,
    "DnsName": DNS_NAME_SCHEMA, "Duid": DUID_SCHEMA}

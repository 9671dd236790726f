"""The JSON Schema accepts exactly what the loader accepts (model.value_schema).

An editor checks a spec with the schema while it is typed; a schema looser than the
loader lets mistakes through, a stricter one flags good specs. So:

1. each value type's pattern against its parser, on tricky cases and on random text made
   of the pieces addresses, ranges, MACs, ports and lease times are made of;
2. the whole schema against the models (pydantic, strict, what `load` runs), with random
   values at every kind of key: both accept, or both refuse;
3. the patterns compile in ECMAScript with the `u` flag (how yaml-language-server reads
   them) and judge the tricky cases as Python's `re` does (when node is installed).

What no pattern can say is left to `kvmnet validate` and excluded here by name: a
subnet's host bits, a reversed port range, surrogates and unassigned code points in text,
and a number written as 9000.0 (JSON Schema's integer takes it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kvmnet.model import types as t
from kvmnet.model import value_schema as vs
from kvmnet.model.spec import Spec
from kvmnet.spec.schema import json_schema

try:
    import jsonschema
except ImportError:  # pragma: no cover - an install from before the test extra had it
    pytest.fail("jsonschema is missing: run ./scripts/setup", pytrace=False)

SCALE = float(os.environ.get("KVMNET_PROPERTY_EXAMPLES", "1"))
COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def accepts(parse: Callable[[Any], Any], value: str, *unsayable: str) -> bool:
    """Does the parser take `value`? Errors whose message holds one of `unsayable`
    (what the pattern cannot express) count as taking it."""
    try:
        parse(value)
    except ValueError as e:
        return any(u in str(e) for u in unsayable)
    return True


# pattern -> (parser, messages of what the pattern cannot say)
PAIRS: dict[str, tuple[str, Callable[[Any], Any], tuple[str, ...]]] = {
    "addr": (vs.ADDR, t.parse_ip, ()),
    "iface": (vs.IFACE, t.parse_iface, ()),
    "net": (vs.NET, t.parse_net, ("has host bits set",)),
    "range": (vs.RANGE, t.parse_range, ()),
    "mac": (vs.MAC, t.parse_mac, ()),
    "ports": (vs.PORTS, t.parse_ports, ("is reversed",)),
    "name": (vs.NAME, t.parse_name, ()),
    "ifname": (vs.IFNAME, t.parse_ifname, ()),
    "dns": (vs.DNS_NAME, t.parse_dns_name, ()),
    "duid": (vs.DUID, t.parse_duid, ()),
    "text": (vs.TEXT, t.parse_text, ()),
}

TRICKY = [
    "", " ", "0", "1", "01", "10.0.0.1", " 10.0.0.1\n", "10.0.0.01", "10.0.0.256",
    "10.0.0", "1.2.3.4.5", "::", ":::", "::1", "1::", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "::ffff:1.2.3.4",
    "::ffff:1.2.3.04", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0",
    "fe80::1%", "fe80::1% ", "fe80::1%a b", "fe80::1%%", "fe80::1%eth0/64", "10.0.0.1/24",
    "10.0.0.1/024", "10.0.0.1/33", "10.0.0.1/", "10.0.0.0/255.0.0.0", "10.0.0.0/0.0.0.255",
    "10.0.0.0/255.0.255.0", "10.0.0.1/24/1", "fd00::/64", "fd00::1/129", "10.0.0.1 /24",
    "10.0.0.2-10.0.0.9", "10.0.0.2 - 10.0.0.9", "10.0.0.2-fd00::1", "fd00::2-fd00::9",
    "10.0.0.2--10.0.0.9", "52:54:00:12:34:56", "52-54-00-12-34-56", "52:54-00:12:34:56",
    "52:54:00:AB:cd:EF", " 52:54:00:12:34:56 ", "52:54:00:12:34", "8000", "8000-8010",
    "8010-8000", "0", "65535", "65536", "00080", "80-", "1h", "30M", "600s", "infinite",
    "INFINITE", "1 h", "h", "web1", "web1\n", "-web", ".", "..", "...", "a" * 64, "a" * 65,
    "br0", "a" * 15, "a" * 16, "br-0@x+y", "br0+", "a+b+", "+", "_dns", "a..b", "0:3:0:1",
    ":::", ":1",
    "abc\u00ad", "a\u2028b", "tab\there", "caf\u00e9", "\U000e0001", "\U0001f600",
    "\u0430", "\uff10", "١٢٣",
]


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_tricky_values(kind: str) -> None:
    pattern, parse, unsayable = PAIRS[kind]
    wrong = [v for v in TRICKY
             if bool(re.search(pattern, v)) != accepts(parse, v, *unsayable)]
    assert not wrong, f"{kind}: the pattern and the parser disagree on {wrong!r}"


PIECES = ["0", "1", "9", "10", "01", "255", "256", "24", "32", "33", "64", "129", "65535",
          "65536", ".", ":", "::", "%", "eth0", "/", "-", " ", "\t", "\n", "fe80", "ffff",
          "abcd", "12345", "1.2.3.4", "52", "aB", "h", "m", "s", "x", "infinite", "_", "@",
          "+", "\u00a0", "\u00ad", "\u0430", "\u2028", "\x1c", "\U000e0001"]
pieced = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
alphabet = st.text(st.sampled_from("0123456789abcdefABCDEF:.%/- \tn\u00a0"), max_size=24)


@cache
def _all_ips() -> st.SearchStrategy[str]:
    return st.ip_addresses().map(str)


@settings(max_examples=int(400 * SCALE), **COMMON)
@given(value=st.one_of(pieced, alphabet, st.text(max_size=10),
                       st.tuples(_all_ips(), st.sampled_from(["", "/24", "/64", "/0", "-"]),
                                 st.one_of(st.just(""), _all_ips())).map("".join)))
@example(value="fe80::1%eth0-fe80::2")
def test_random_values(value: str) -> None:
    assume(not any(unicodedata.category(c) in ("Cn", "Cs") for c in value))  # (docstring)
    for kind, (pattern, parse, unsayable) in PAIRS.items():
        assert bool(re.search(pattern, value)) == accepts(parse, value, *unsayable), kind


def test_white_space_is_what_strip_removes() -> None:
    """The parsers strip() values; the patterns' white space class is str.isspace's."""
    space = re.compile(vs.WS + "$")
    chars = (chr(c) for c in range(sys.maxunicode + 1))
    wrong = [c for c in chars if (bool(space.match(c)) and c != "") != c.isspace()]
    assert not wrong, [f"U+{ord(c):04X}" for c in wrong]


def test_text_refuses_every_control_and_format_character() -> None:
    """Every assigned character: the text pattern refuses it iff parse_text does (the
    list in value_schema is Unicode 14's; a newer Python's additions show up here)."""
    text = re.compile(vs.TEXT)
    wrong = []
    for c in map(chr, range(sys.maxunicode + 1)):
        if unicodedata.category(c) in ("Cn", "Cs"):
            continue
        if bool(text.search(c)) != accepts(t.parse_text, c):
            wrong.append(f"U+{ord(c):04X} {unicodedata.category(c)}")
    assert not wrong, f"add these to value_schema._NOT_TEXT and regenerate: {wrong}"


# ------------------------------------------------------------------ 2. schema vs models

@cache
def validator() -> Any:
    return jsonschema.Draft7Validator(json_schema())


def put(value: Any, *path: str) -> dict[str, Any]:
    """A spec that is valid but for `value` at `path`."""
    data: dict[str, Any] = {"networks": {"n": {"ipv4": {"address": "10.0.0.1/24"}}}}
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


SLOTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "ipv4.address": lambda v: put(v, "networks", "n", "ipv4", "address"),
    "ipv4.dhcp": lambda v: put(v, "networks", "n", "ipv4", "dhcp"),
    "ipv4.lease_time": lambda v: put(v, "networks", "n", "ipv4", "lease_time"),
    "ipv4.tftp": lambda v: put(v, "networks", "n", "ipv4", "tftp"),
    "ipv4.bootp": lambda v: put(v, "networks", "n", "ipv4", "bootp"),
    "mac": lambda v: put(v, "networks", "n", "mac"),
    "bridge": lambda v: put(v, "networks", "n", "bridge"),
    "mtu": lambda v: put(v, "networks", "n", "mtu"),
    "mode": lambda v: put(v, "networks", "n", "mode"),
    "domain": lambda v: put(v, "networks", "n", "domain"),
    "nat": lambda v: put(v, "networks", "n", "nat"),
    "nat.addresses": lambda v: put(v, "networks", "n", "nat", "addresses"),
    "forward": lambda v: put(v, "networks", "n", "forwards"),
    "forwarders": lambda v: put(v, "networks", "n", "dns", "forwarders"),
    "dhcp host": lambda v: put([{"ip": "10.0.0.5", "id": v}], "networks", "n", "ipv4",
                               "hosts"),
    "route": lambda v: put([{"to": v, "via": "10.0.0.2"}], "networks", "n", "ipv4",
                           "routes"),
    "host bridge": lambda v: {"host": {"bridges": {"br0": v}}},
    "nic": lambda v: {"guests": {"g": {"interfaces": v}}},
    "network name": lambda v: {"networks": {v: {}}} if isinstance(v, str) else {},
    "ovn": lambda v: {"ovn": v},
    "root": lambda v: v,
}

FIELDS = ["address", "dhcp", "start", "end", "lease_time", "expiry", "unit", "ip", "mac",
          "id", "network", "bridge", "addr", "domain", "proto", "host_port", "guest",
          "guest_port", "ports", "addresses", "northbound", "gateway", "stp", "x"]
TEXTS = st.one_of(pieced, st.sampled_from(TRICKY + ["tcp", "udp", "nat", "virtio",
                                                     "tcp:10.0.0.5:6641", "hours"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), TEXTS,
                    st.floats(allow_nan=False).filter(lambda f: not f.is_integer()))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)),
    max_leaves=8)
# Errors the models give for what the schema cannot say (see the module docstring).
UNSAYABLE = ("has host bits set", "is reversed", "not a character", "a surrogate")


def models_accept(data: Any) -> bool:
    try:
        Spec.model_validate(data, strict=True)
    except ValidationError as e:
        return all(any(u in err["msg"] for u in UNSAYABLE) for err in e.errors())
    return True


@settings(max_examples=int(400 * SCALE), **COMMON)
@given(slot=st.sampled_from(sorted(SLOTS)), value=VALUES)
@example(slot="nic", value=[{"network": "default", "bridge": None}])
@example(slot="forwarders", value=[{"addr": None, "domain": None}])
@example(slot="nat.addresses", value=["10.0.0.1", "10.0.0.5"])
@example(slot="ipv4.dhcp", value={"start": "10.0.0.2", "end": "10.0.0.9", "lease_time": "1h"})
def test_schema_accepts_what_the_models_accept(slot: str, value: Any) -> None:
    data = SLOTS[slot](value)
    assert validator().is_valid(data) == models_accept(data), json.dumps(data)


def test_what_the_schema_cannot_say() -> None:
    """The documented differences, so that a change to either side shows up here."""
    forward = {"proto": "tcp", "host_port": 80, "address": "10.0.0.5",
               "sources": ["10.0.0.1/24"]}                          # host bits
    for data in (put(9000.0, "networks", "n", "mtu"),               # JSON Schema's integer
                 put([forward], "networks", "n", "forwards"),
                 put("8010-8000", "networks", "n", "nat", "ports")):  # reversed
        assert validator().is_valid(data)
        with pytest.raises(ValidationError):
            Spec.model_validate(data, strict=True)


# ------------------------------------------------------------------ 3. ECMAScript

def test_patterns_read_alike_in_ecmascript() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the ECMAScript reading is not checked here")
    patterns = {k: p for k, (p, _, _) in PAIRS.items()} | {
        "lease": vs.LEASE, "ovsdb": vs.OVSDB_REMOTE}
    script = ("const d = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "const out = {};"
              "for (const [k, p] of Object.entries(d.patterns)) {"
              "  const r = new RegExp(p, 'u'); out[k] = d.values.map(v => r.test(v)); }"
              "process.stdout.write(JSON.stringify(out));")
    r = subprocess.run([node, "-e", script], input=json.dumps(
        {"patterns": patterns, "values": TRICKY}), capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for k, p in patterns.items():
        py = [bool(re.search(p, v)) for v in TRICKY]
        wrong = [v for v, a, b in zip(TRICKY, got[k], py, strict=True) if a != b]
        assert not wrong, f"{k}: ECMAScript and Python read the pattern apart on {wrong!r}"

"""Hostile spec values, generated (issue 17): where each kind of value sits in a spec,
found by walking kvmnet's models (so a field added later is tried too), the YAML that
puts one value there with its line and column, and hypothesis strategies of values
that must be refused.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from hypothesis import strategies as st
from pydantic import BaseModel

from kvmnet.model.spec import Spec

Path = tuple[str | int, ...]
KEY = "k"   # the name given to every user-chosen mapping key (a network, a bridge, ...)


@dataclass(frozen=True)
class Leaf:
    """One place a scalar goes: its path (list items at index 0, user-chosen keys named
    KEY), its annotation, and the names of the validator functions kvmnet runs on it.
    is_key: the value is the mapping key at the end of path (a host bridge's name)."""

    path: Path
    annotation: Any
    validators: frozenset[str]
    is_key: bool = False

    @property
    def name(self) -> str:
        return ".".join(map(str, self.path)) + ("(key)" if self.is_key else "")


def _validators(tp: Any) -> set[str]:
    out: set[str] = set()
    for m in getattr(tp, "__metadata__", ()):
        fn = getattr(m, "func", None)
        if fn is not None:
            out.add(fn.__name__)
    for a in get_args(tp):
        out |= _validators(a)
    return out


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _leaves(tp: Any, path: Path) -> list[Leaf]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) > 1 and not any(_is_model(a) or get_origin(a) for a in args):
            return [Leaf(path, tp, frozenset(_validators(tp)))]   # IPv4Address | IPv6Address
        return [leaf for a in args for leaf in _leaves(a, path)]
    if origin is list:
        return _leaves(get_args(tp)[0], path + (0,))
    if origin is dict:
        key, value = get_args(tp)
        out = [Leaf(path + (KEY,), key, frozenset(_validators(key)), is_key=True)]
        return out + _leaves(value, path + (KEY,))
    if _is_model(tp) and tp.__name__ != "Lease":
        out = []
        for name, f in tp.model_fields.items():
            funcs = {m.func.__name__ for m in f.metadata if hasattr(m, "func")}
            for leaf in _leaves(f.annotation, path + (name,)):
                out.append(Leaf(leaf.path, leaf.annotation, leaf.validators | funcs,
                                leaf.is_key))
        return out
    return [Leaf(path, tp, frozenset(_validators(tp)))]


def leaves() -> list[Leaf]:
    """Every scalar place of a spec, walked from Spec's annotations (a Lease counts as
    one: a spec writes `lease_time: 600` or `1h`)."""
    return _leaves(Spec, ())


def takes(leaf: Leaf, *what: Any) -> bool:
    """Does the leaf take values of one of these types, or run one of these validators?"""
    def mentions(tp: Any) -> bool:
        return tp in what or any(mentions(a) for a in get_args(tp))
    return mentions(leaf.annotation) or bool(leaf.validators & {w for w in what
                                                                 if isinstance(w, str)})


def yaml_at(leaf: Leaf, scalar: str) -> tuple[str, int, int]:
    """A spec text with `scalar` (YAML, written as is) at the leaf's place, and the line
    and column it starts at."""
    lines: list[str] = []
    indent, dash, col = 0, False, 0
    for i, step in enumerate(leaf.path):
        last = i == len(leaf.path) - 1
        if isinstance(step, int):
            dash = True
            if last:
                head = "  " * indent + "- "
                lines.append(head + scalar)
                col = len(head) + 1
            continue
        head = "  " * indent + ("- " if dash else "")
        indent += 2 if dash else 1
        dash = False
        if last and leaf.is_key:
            lines.append(f"{head}{scalar}: {{}}")
            col = len(head) + 1
        elif last:
            lines.append(f"{head}{step}: {scalar}")
            col = len(head) + len(str(step)) + 3
        else:
            lines.append(f"{head}{step}:")
    return "\n".join(lines) + "\n", len(lines), col


# -- numbers YAML 1.1 reads otherwise than they look ----------------------------------

def _sexagesimal() -> st.SearchStrategy[str]:
    return st.builds(lambda a, rest: ":".join([str(a)] + [f"{d:02d}" for d in rest]),
                     st.integers(1, 999), st.lists(st.integers(0, 59), min_size=1, max_size=4))


MISREAD_NUMBERS: st.SearchStrategy[str] = st.one_of(
    _sexagesimal(),
    st.from_regex(r"0[0-7]{1,6}", fullmatch=True).filter(lambda t: t.strip("0") != ""),
    st.from_regex(r"0x[0-9a-fA-F]{1,6}", fullmatch=True),
    st.from_regex(r"0b[01]{1,12}", fullmatch=True),
    st.from_regex(r"[1-9][0-9]{0,2}(_[0-9]{1,3}){1,2}", fullmatch=True),
).flatmap(lambda t: st.sampled_from([t, "+" + t, "-" + t]) if ":" not in t
          else st.just(t))


# -- interface names ending in an iptables wildcard ------------------------------------

WILDCARD_IFNAMES: st.SearchStrategy[str] = st.one_of(
    st.just("+"), st.from_regex(r"[a-z][a-z0-9_.-]{0,12}\+", fullmatch=True))



# -- addresses with an IPv6 scope id, and values that break a line ---------------------

ADDRESS_PARSERS = ("parse_ip", "parse_iface", "parse_net", "parse_range")
MARK = "INJ"   # in every payload: an artefact that holds it took a hostile value
# What a scope id (or a bypassed value) carries: shell, keyfile and nft syntax, and the
# characters that end a line in one reader or another.
PAYLOADS = ["$(touch INJ)", "`INJ`", ";INJ", "{INJ}", "\nINJ=1", "\r\n[Network]\nINJ=1",
            "\x85INJ", "\u2028INJ", "\x00INJ", "\tINJ", "\x1b[2JINJ", "\u202eINJ", "a b INJ"]
SCOPES: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(PAYLOADS),
    st.tuples(st.sampled_from(PAYLOADS),
              st.text(st.characters(blacklist_categories=("Cs",),
                                    blacklist_characters="%/-"), max_size=6)).map("".join),
).filter(lambda s: s.strip() != "")


def scoped_text(leaf: Leaf, scope: str) -> str:
    """An address of the leaf's kind with `scope` after '%'."""
    kind = next(p for p in ADDRESS_PARSERS if p in leaf.validators)
    return {"parse_ip": f"fe80::1%{scope}", "parse_iface": f"fe80::1%{scope}/64",
            "parse_net": f"fe80::%{scope}/64",
            "parse_range": f"fe80::10%{scope}-fe80::20"}[kind]


def yaml_string(text: str) -> str:
    """text as a YAML double-quoted scalar, every character but printable ASCII escaped
    (\\U for those beyond the BMP: YAML reads JSON's surrogate pairs as two halves)."""
    def esc(ch: str) -> str:
        if " " <= ch <= "~" and ch not in '"\\':
            return ch
        return f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"
    return '"' + "".join(map(esc, text)) + '"'


# -- a valid spec with every line-oriented artefact, and values put in past validation --

BASELINE = """\
host:
  bridges:
    br0:
      ports: [eth0, eth1]
      address: [192.168.1.2/24, 'fd00:1::2/64']
      gateway: 192.168.1.1
      gateway6: 'fe80::1'
      slaac: true
      metric: 100
      mtu: 9000
      dns: [192.168.1.1, 'fd00:1::1']
      check: 192.168.1.1
    br1:
      address: ['fd00:2::2/64']
      gateway: 'fe80::1'
      metric: 50
      forward_delay: 4
networks:
  routed:
    mode: route
    bridge: virbr5
    ipv4: {address: 10.5.0.1/24, dhcp: 10.5.0.10-10.5.0.99}
    ipv6: {address: 'fd00:5::1/64'}
  web:
    mode: nat
    bridge: virbr6
    ipv4: {address: 10.6.0.1/24}
    forwards:
      - {proto: tcp, host_port: 2222, guest: web1, guest_port: 22, listen: 192.168.1.2}
      - {proto: udp, host_port: 5000-5001, address: 10.6.0.7, sources: [192.0.2.0/24]}
guests:
  web1:
    interfaces: [{network: web, ipv4: 10.6.0.5}]
"""


def instance_leaves(value: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    """(path, value) of every leaf of a model instance; a mapping's key is a leaf too
    (its path ends in ('[key]', KEY))."""
    if isinstance(value, BaseModel):
        return [x for name in type(value).model_fields
                for x in instance_leaves(getattr(value, name), path + (name,))]
    if isinstance(value, dict):
        out: list[tuple[Path, Any]] = []
        for k, v in value.items():
            out.append((path + ("[key]", k), k))
            out += instance_leaves(v, path + (k,))
        return out
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in instance_leaves(v, path + (i,))]
    return [(path, value)]


def with_value(model: Any, path: Path, new: Any) -> Any:
    """model with the value at path replaced, past validation (model_copy), as a bug or
    a lax reading could hand it to a renderer."""
    head, rest = path[0], path[1:]
    if head == "[key]":
        return {(new if k == rest[0] else k): v for k, v in model.items()}
    if isinstance(model, BaseModel):
        inner = getattr(model, str(head))
        return model.model_copy(update={str(head): with_value(inner, rest, new)
                                        if rest else new})
    if isinstance(model, dict):
        return {k: (with_value(v, rest, new) if rest else new) if k == head else v
                for k, v in model.items()}
    assert isinstance(model, list) and isinstance(head, int)
    return [(with_value(v, rest, new) if rest else new) if i == head else v
            for i, v in enumerate(model)]


# -- libvirt URIs a spec may name, and those it may not ---------------------------------

_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
HOSTNAMES = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)
_USERS = st.from_regex(r"[a-z_][a-z0-9_.-]{0,8}", fullmatch=True)
SOCKETS = [f"{run}/libvirt/{d}-sock{ro}" for run in ("/run", "/var/run")
           for d in ("libvirt", "virtqemud") for ro in ("", "-ro")]
_GOOD_PARAMS = {"mode": ["auto", "legacy", "direct"], "proxy": ["auto", "netcat", "native"],
                "no_tty": ["0", "1"]}


@st.composite
def allowed_uris(draw: st.DrawFn) -> str:
    """Remote qemu over ssh, TLS or TCP with harmless parameters, or the local socket."""
    path = draw(st.sampled_from(["/system", "/session"]))
    keys = draw(st.lists(st.sampled_from(sorted(_GOOD_PARAMS)), unique=True, max_size=3))
    params = [f"{k}={draw(st.sampled_from(_GOOD_PARAMS[k]))}" for k in keys]
    if draw(st.booleans()):   # this machine's socket
        transport = draw(st.sampled_from(["", "+unix"]))
        if draw(st.booleans()):
            params.append(f"socket={draw(st.sampled_from(SOCKETS))}")
        return f"qemu{transport}://{path}" + (f"?{'&'.join(params)}" if params else "")
    transport = draw(st.sampled_from(["", "+ssh", "+tls", "+tcp"]))
    user = draw(st.one_of(st.just(""), _USERS.map(lambda u: u + "@")))
    host = draw(st.one_of(HOSTNAMES, st.ip_addresses(v=4).map(str),
                          st.ip_addresses(v=6).map(lambda a: f"[{a}]")))
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    return f"qemu{transport}://{user}{host}{port}{path}" + (
        f"?{'&'.join(params)}" if params else "")


_BAD_PARAMS = ["command=/tmp/x", "netcat=/tmp/nc", "keyfile=/root/.ssh/id_rsa",
               "pkipath=/tmp/pki", "known_hosts=/etc/passwd", "authfile=/tmp/a",
               "name=test:///etc/shadow", "socket=/tmp/evil.sock", "no_verify=1",
               "known_hosts_verify=ignore", "sshauth=password", "tls_priority=NORMAL",
               "mode=x;id", "proxy=$(id)", "c%6fmmand=/tmp/x", "command"]


@st.composite
def refused_uris(draw: st.DrawFn) -> str:
    """URIs that can run a program, read or write a file, or reach another socket."""
    base = draw(allowed_uris())
    kind = draw(st.integers(0, 4))
    if kind == 0:   # a parameter that names a program or a file, or is unknown
        sep = "&" if "?" in base else "?"
        return base + sep + draw(st.one_of(st.sampled_from(_BAD_PARAMS), st.from_regex(
            r"[a-z_]{1,10}=[a-z0-9/]{0,8}", fullmatch=True).filter(
                lambda p: p.split("=")[0] not in (*_GOOD_PARAMS, "socket"))))
    if kind == 1:   # a transport that runs a program, or one not on the list
        t = draw(st.one_of(st.sampled_from(["ext", "libssh", "libssh2", "fd", "ssh2"]),
                           st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
                               lambda t: t not in ("ssh", "tls", "tcp", "unix"))))
        return f"qemu+{t}:///system?command=/tmp/x"
    if kind == 2:   # the test driver with a file, or another driver
        path = draw(st.from_regex(r"(/[a-z0-9._-]{1,8}){1,3}", fullmatch=True))
        driver = draw(st.sampled_from(["test", "lxc", "xen", "vbox", "esx", "bhyve", "ch"]))
        return f"{driver}://{path}" if driver == "test" and path != "/default" else \
            f"{driver}:///system"
    if kind == 3:   # a host or user ssh would read as an option
        return f"qemu+ssh://{draw(st.sampled_from(['-oProxyCommand=x', '-x@hv1']))}/system"
    # escapes and fragments libvirt decodes or drops
    return base + draw(st.sampled_from(["#frag", "?c%6fmmand=x", "%20"]))

"""pydantic's validation errors in kvmnet's words: the one place where they become
messages (spec.load adds FILE:LINE:COL; render.network_parse, reading libvirt's XML,
uses one_line).

A message says what is wrong and what to write instead: "expected a whole number, got
str '9000': write it without quotes", "unknown key 'brigde': did you mean 'bridge'?".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from kvmnet.errors import Problem, close_matches
from kvmnet.model.spec import Spec

if TYPE_CHECKING:
    from kvmnet.spec.positions import Positions

from kvmnet.spec.positions import Path_ as Path_  # (re-exported)


def one_line(err: ValidationError) -> str:
    """Every error of err on one line, each after its path: for messages without a
    file position (libvirt XML: "mtu: expected a whole number, got str 'big'")."""
    parts = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if p != "[key]")
        where = format_path(loc)
        msg = message(e, loc)
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(dict.fromkeys(parts))


def problems(err: ValidationError, pos: Positions, file: str
             ) -> Iterator[tuple[Path_, Problem]]:
    """Each of pydantic's errors as a Problem at FILE:LINE:COL (with its loc as the user
    wrote it): what is wrong, and what to write instead."""
    seen: set[tuple[Path_, str]] = set()
    for e in err.errors(include_url=False):
        loc, is_key = clean_loc(e["loc"], pos)
        kind = e["type"]
        if loc[-2:] == ("lease_time", "expiry") and loc not in pos.at:
            # 'lease_time: -5' went through Lease's {expiry: -5}: speak of what was written.
            loc = loc[:-1]
            e = {**e, "type": "value_error", "ctx": {"error": (
                f"{e.get('input')!r} is not a lease time: write e.g. 1h, 30m, 600s or "
                "infinite")}}
            kind = "value_error"
        if kind == "extra_forbidden":
            key = loc[-1]
            line, col = pos.find(loc, key=True)
            msg = message(e, loc) + _did_you_mean(str(key), _allowed_keys(loc[:-1]))
        elif kind == "missing":
            # Point at the key that holds the mapping the key is missing from.
            line, col = pos.find(loc[:-1], key=True)
            msg = message(e, loc)
        else:
            line, col = pos.find(loc, key=is_key)
            msg = message(e, loc)
        where = format_path(loc)
        if (loc, msg) in seen:
            continue
        seen.add((loc, msg))
        yield loc, Problem(pos.file_of(loc, file), line, col,
                           f"{where}: {msg}" if where else msg)


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")


def format_path(path: Sequence[str | int]) -> str:
    """networks.default.ipv4; a key that is not a plain name is quoted, so a key with a
    newline or ': ' in it cannot break (or forge) a FILE:LINE:COL line."""
    return ".".join(str(p) if isinstance(p, int) or _PLAIN.fullmatch(p) else repr(p)
                    for p in path)


def clean_loc(loc: tuple[Any, ...], pos: Positions) -> tuple[Path_, bool]:
    """Drop list indexes the user did not write (a single value we wrapped into a list)
    from a loc, and say whether the error is about a mapping key ('[key]', after the
    key in pydantic's locs) rather than its value."""
    out: list[str | int] = []
    is_key = False
    for p in loc:
        here = tuple(out) + (p,)
        if p == "[key]" and here not in pos.at and here not in pos.keys:
            is_key = True   # (a key the user wrote, even one named '[key]', stays)
            continue
        if isinstance(p, int) and tuple(out) in pos.at and here not in pos.at:
            continue
        out.append(p)
    return tuple(out), is_key


_TYPE_WORDS = {
    "string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number",
    "bool_type": "true or false", "bool_parsing": "true or false", "dict_type": "a mapping",
    "list_type": "a list", "model_type": "a mapping", "float_type": "a number",
}


_VLAN_KEYS = ("vlan", "vlans", "native", "pvid")


def message(e: Any, loc: Path_) -> str:
    """One pydantic error (a dict of ValidationError.errors()) in kvmnet's words."""
    kind = e["type"]
    got = e.get("input")
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}" if loc else "unknown key"
    if kind == "value_error":
        return str(e["ctx"]["error"]) if "ctx" in e else e["msg"]
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing: add it"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", e["ctx"]["expected"])
        close = close_matches(str(got).lower(), options, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{got!r} is not allowed{hint}: write one of {', '.join(options)}"
    if kind in _TYPE_WORDS:
        hint = ""
        if got is None and kind in ("dict_type", "model_type", "list_type"):
            empty = "[]" if kind == "list_type" else "{}"
            hint = (f": write {empty} for an empty one, or indent what belongs under "
                    f"{loc[-1] if loc else 'it'!s} further than it")
        if kind == "list_type" and isinstance(got, str | int) and not isinstance(got, bool):
            hint = f": write a list, e.g. [{got}]"
        if kind == "list_type" and loc and loc[-1] == "dhcp":
            hint = (": dhcp is the range of addresses libvirt's DHCP hands out, START-END "
                    "in the subnet (e.g. dhcp: 10.0.0.100-10.0.0.199), or a list of them; "
                    "leave dhcp out for no DHCP")
        if kind == "model_type" and loc and loc[-1] == "lease_time":
            return f"expected a lease time like 1h, 30m, 600s or infinite, got {_describe(got)}"
        if isinstance(got, str) and (
                (kind in ("int_type", "float_type") and got.strip().lstrip("-").isdecimal()
                 and got.isascii())
                or (kind == "bool_type" and got.strip().lower() in ("true", "false"))):
            hint = ": write it without quotes"
        return f"expected {_TYPE_WORDS[kind]}, got {_describe(got)}{hint}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        hint = (": a VLAN id is 1-4094" if loc and any(k in loc for k in _VLAN_KEYS)
                else "")
        return f"{got!r} is out of range: {e['msg'].lower()}{hint}"
    if kind == "too_short":
        return f"must not be empty ({e['msg'].lower()})"
    return f"{e['msg']} (got {_describe(got)})"


def _describe(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return str(v).lower()
    return f"{type(v).__name__} {v!r}"


def _allowed_keys(loc: Path_) -> list[str]:
    """Field names of the model found at loc (walked through the Spec's annotations)."""
    fields = getattr(_inner_model(annotation_at(loc)), "model_fields", None)
    return list(fields) if fields else []


def annotation_at(loc: Path_) -> Any:
    """The type the models give the value at loc (walked through the Spec's
    annotations); None when loc is no field."""
    tp: Any = Spec
    for p in loc:
        if isinstance(p, int):
            tp = _item_type(tp, list)
            continue
        fields = getattr(_inner_model(tp), "model_fields", None)
        if _item_type(tp, dict) is not None:
            tp = _item_type(tp, dict)  # p is a user-chosen key (network, guest, bridge name)
        elif fields and p in fields:
            tp = fields[p].annotation
        else:
            return None
    return tp


def _item_type(tp: Any, container: type) -> Any:
    """The value type of dict[K, V] / list[V] inside tp (through Optional)."""
    if getattr(tp, "__origin__", None) is container:
        return tp.__args__[-1]
    for a in getattr(tp, "__args__", ()):
        if getattr(a, "__origin__", None) is container:
            return a.__args__[-1]
    return None


def _inner_model(tp: Any) -> Any:
    args = getattr(tp, "__args__", ())
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for a in reversed(args):
        m = _inner_model(a)
        if m is not None:
            return m
    return None


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f": did you mean {close[0]!r}?"
    if options:
        return f": allowed keys here are {', '.join(options)}"
    return ""

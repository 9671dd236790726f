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


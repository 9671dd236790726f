"""load: text -> Spec, or every problem at once with FILE:LINE:COL.

PyYAML's C loader composes a node tree whose nodes carry line and column;
we walk it once into plain Python values while recording where each value
came from (`Positions`), then let pydantic type it and map each of its
errors back to a position. Duplicate keys, which YAML loaders silently
accept, are found during the walk.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kvmnet.errors import Problem, SpecError
from kvmnet.spec.model import Spec

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader

Path_ = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each value of the loaded document starts: path -> (line, col), 1-based."""

    at: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def find(self, path: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        """Best position for a path; falls back to the nearest known ancestor."""
        p = tuple(path)
        while p:
            table = self.keys if key and p in self.keys else self.at
            if p in table:
                return table[p]
            p = p[:-1]
        return self.at.get((), (1, 1))


class _Walker:
    def __init__(self, problems: list[Problem], file: str) -> None:
        self.pos = Positions()
        self.problems = problems
        self.file = file

    def value(self, node: yaml.Node, path: Path_, depth: int = 0) -> Any:
        mark = node.start_mark
        self.pos.at[path] = (mark.line + 1, mark.column + 1)
        if depth > MAX_DEPTH:
            self.problems.append(
                Problem(self.file, mark.line + 1, mark.column + 1,
                        f"nesting deeper than {MAX_DEPTH} levels: a kvmnet spec is at most a "
                        "few levels deep; check the indentation")
            )
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    m = knode.start_mark
                    self.problems.append(
                        Problem(self.file, m.line + 1, m.column + 1,
                                "a key must be a plain name, not a list or mapping")
                    )
                    continue
                key = knode.value
                if knode.tag == "tag:yaml.org,2002:merge":
                    m = knode.start_mark
                    self.problems.append(
                        Problem(self.file, m.line + 1, m.column + 1,
                                "merge keys ('<<') are not supported: write the keys out")
                    )
                    continue
                km = knode.start_mark
                if key in out:
                    first = self.pos.keys[path + (key,)]
                    self.problems.append(
                        Problem(self.file, km.line + 1, km.column + 1,
                                f"duplicate key {key!r} (first at line {first[0]}): "
                                "remove one of them or merge their contents")
                    )
                    continue
                self.pos.keys[path + (key,)] = (km.line + 1, km.column + 1)
                out[key] = self.value(vnode, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(n, path + (i,), depth + 1) for i, n in enumerate(node.value)]
        return _Scalar.construct(node)


class _Scalar(_Loader):  # type: ignore[misc]
    """Constructs one scalar with YAML 1.1 safe rules (ints, bools, null, str)."""

    _inst: Any = None

    @classmethod
    def construct(cls, node: yaml.Node) -> Any:
        if cls._inst is None:
            cls._inst = cls("")
        return cls._inst.construct_object(node, deep=True)


def read_text(path: str) -> str:
    """Read a spec file as UTF-8, turning every foreseeable failure into SpecError."""
    p = Path(path)
    try:
        if p.is_dir():
            raise SpecError([Problem(path, 0, 0, "is a directory: give the spec file's path")])
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SpecError([Problem(
                path, 1, 1,
                f"file is {size / 1e6:.1f} MB; a kvmnet spec is at most {MAX_BYTES >> 20} MiB: "
                "is this the right file?")])
        data = p.read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem(path, 0, 0, "no such file")]) from None
    except PermissionError:
        raise SpecError([Problem(path, 0, 0,
                                 "permission denied: run as a user who can read it")]) from None
    except OSError as e:
        raise SpecError([Problem(path, 0, 0, f"cannot read: {e.strerror}")]) from None
    return decode(data, path)


def decode(data: bytes, file: str) -> str:
    if b"\x00" in data[:8192]:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise SpecError([Problem(file, line, 1, "binary data (NUL bytes): this is not a YAML "
                                 "spec file")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError([Problem(file, line, col,
                                 f"not UTF-8 text (byte 0x{data[e.start]:02x}): save the file "
                                 "as UTF-8")]) from None


def compose(text: str, file: str, problems: list[Problem]) -> tuple[Any, Positions]:
    """YAML text -> (plain data, positions); raises SpecError on syntax errors.

    Structural problems that still leave usable data (duplicate keys: the
    first one wins) are appended to `problems` so validation can go on.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        what = e.problem or "syntax error"
        hint = _syntax_hint(what)
        raise SpecError([Problem(file, line, col, f"YAML syntax: {what}{hint}")]) from None
    except yaml.YAMLError as e:
        raise SpecError([Problem(file, 1, 1, f"YAML: {e}")]) from None
    walker = _Walker(problems, file)
    if root is None:
        return {}, walker.pos
    try:
        data = walker.value(root, ())
    except yaml.constructor.ConstructorError as e:
        m = e.problem_mark
        raise SpecError([Problem(file, (m.line + 1) if m else 1, (m.column + 1) if m else 1,
                                 f"YAML: {e.problem}")]) from None
    return data, walker.pos


def _syntax_hint(what: str) -> str:
    if "tab" in what:
        return ": indent with spaces, not tabs"
    if "mapping values are not allowed" in what:
        return ": a value containing ': ' must be quoted, or a key is mis-indented"
    if "could not find expected ':'" in what:
        return ": a key is missing its ':' or a line is mis-indented"
    return ""


def load_text(text: str, file: str = "<spec>") -> tuple[Spec, Positions]:
    problems: list[Problem] = []
    data, pos = compose(text, file, problems)
    if not isinstance(data, dict):
        raise SpecError([Problem(file, *pos.find(()),
                                 "the spec must be a mapping with keys host, networks, guests")])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        problems.extend(_problems(e, pos, file))
    if problems:
        raise SpecError(sorted(problems, key=Problem.sort_key))
    return spec, pos


def load(path: str | os.PathLike[str]) -> tuple[Spec, Positions]:
    file = os.fspath(path)
    text = read_text(file)
    return load_text(text, file)


def _problems(err: ValidationError, pos: Positions, file: str) -> Iterator[Problem]:
    seen: set[tuple[Path_, str]] = set()
    for e in err.errors(include_url=False):
        loc = _clean_loc(e["loc"], pos)
        kind = e["type"]
        if kind == "extra_forbidden":
            key = loc[-1]
            line, col = pos.find(loc, key=True)
            msg = f"unknown key {key!r}" + _did_you_mean(str(key), _allowed_keys(loc[:-1]))
        else:
            line, col = pos.find(loc)
            msg = _message(e, loc)
        where = ".".join(str(p) for p in loc)
        if (loc, msg) in seen:
            continue
        seen.add((loc, msg))
        yield Problem(file, line, col, f"{where}: {msg}" if where else msg)


def _clean_loc(loc: tuple[Any, ...], pos: Positions) -> Path_:
    """Drop pydantic's union/validator tags ('function-after[...]', 'str', ...) from a loc,
    and list indexes the user did not write (a single value we wrapped into a list)."""
    out: list[str | int] = []
    for p in loc:
        if isinstance(p, str) and ("[" in p or p in _TAGS):
            continue
        if isinstance(p, int) and tuple(out) in pos.at and tuple(out) + (p,) not in pos.at:
            continue
        out.append(p)
    return tuple(out)


_TAGS = {"str", "int", "dict", "list", "bool", "DhcpRange", "Lease", "IPv4Address",
         "IPv6Address", "IPv4Interface", "IPv6Interface", "IPv4Network", "IPv6Network"}

_TYPE_WORDS = {
    "string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number",
    "bool_type": "true or false", "bool_parsing": "true or false", "dict_type": "a mapping",
    "list_type": "a list", "model_type": "a mapping", "float_type": "a number",
}


def _message(e: Any, loc: Path_) -> str:
    kind = e["type"]
    got = e.get("input")
    if kind == "value_error":
        return str(e["ctx"]["error"]) if "ctx" in e else e["msg"]
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing: add it"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", e["ctx"]["expected"])
        close = difflib.get_close_matches(str(got), options, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{got!r} is not allowed{hint}: write one of {', '.join(options)}"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_describe(got)}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{got!r} is out of range: {e['msg'].lower()}"
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
            return []
    fields = getattr(_inner_model(tp), "model_fields", None)
    return list(fields) if fields else []


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
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f": did you mean {close[0]!r}?"
    if options:
        return f": allowed keys here are {', '.join(options)}"
    return ""

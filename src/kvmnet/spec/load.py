"""load: text -> Spec, or every problem at once with FILE:LINE:COL.

PyYAML's C loader composes a node tree whose nodes carry line and column;
we walk it once into plain Python values while recording where each value
came from (`Positions`), then let the models (pydantic) type it and map each of its
errors back to a position. Duplicate keys, which YAML loaders silently
accept, are found during the walk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kvmnet.errors import Problem, SpecError, close_matches
from kvmnet.records import field, record
from kvmnet.spec.model import Spec

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASED = 100_000  # values that YAML aliases may expand to

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader

Path_ = tuple[str | int, ...]


@record
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


class _Stop(Exception):
    """The walk cannot go on (alias bomb); the problems so far say why."""


_STD_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _Walker:
    def __init__(self, problems: list[Problem], file: str) -> None:
        self.pos = Positions()
        self.problems = problems
        self.file = file
        # Paths whose value could not be read: the models' errors under them are noise.
        self.bad: set[Path_] = set()
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._expanded = 0

    def _problem(self, node: yaml.Node, path: Path_, msg: str, bad: bool = True) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.file, m.line + 1, m.column + 1, msg))
        if bad:
            self.bad.add(path)

    def value(self, node: yaml.Node, path: Path_, depth: int = 0, aliased: bool = False) -> Any:
        mark = node.start_mark
        self.pos.at[path] = (mark.line + 1, mark.column + 1)
        # A node met a second time was reached through an alias (*name): count what
        # aliases expand to, so a few lines of anchors cannot make billions of values.
        aliased = aliased or id(node) in self._seen
        self._seen.add(id(node))
        if aliased:
            self._expanded += 1
            if self._expanded > MAX_ALIASED:
                self._problem(node, path, f"YAML aliases (*name) in this file expand to more than "
                              f"{MAX_ALIASED} values: write the values out instead")
                raise _Stop
        if id(node) in self._open:
            self._problem(node, path, "this value contains an alias (*name) of itself: a "
                          "spec cannot refer to itself; write the values out")
            return None
        if depth > MAX_DEPTH:
            self._problem(node, path, f"nesting deeper than {MAX_DEPTH} levels: a kvmnet spec "
                          "is at most a few levels deep; check the indentation")
            return None
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if node.tag not in _STD_TAGS:
                tag = node.tag.replace("tag:yaml.org,2002:", "!!")
                self._problem(node, path, f"YAML: tag {tag!r} is not used in kvmnet specs: "
                              "remove it")
                return None
            self._open.add(id(node))
            try:
                if isinstance(node, yaml.SequenceNode):
                    return [self.value(n, path + (i,), depth + 1, aliased)
                            for i, n in enumerate(node.value)]
                return self._mapping(node, path, depth, aliased)
            finally:
                self._open.discard(id(node))
        try:
            return _Scalar.construct(node)
        except yaml.constructor.ConstructorError as e:
            self._problem(node, path, f"YAML: {e.problem}: kvmnet specs use no tags; "
                          "remove it")
        except Exception:  # noqa: BLE001 - '!!int abc', '!!bool maybe' ... fail in many ways
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self._problem(node, path, f"YAML: {node.value!r} is not a valid {tag} value: "
                          f"fix it or remove the {tag} tag")
        return None

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int, aliased: bool
                 ) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self._problem(knode, path, "a key must be a plain name, not a list or mapping",
                              bad=False)
                continue
            key = knode.value
            if knode.tag == "tag:yaml.org,2002:merge":
                self._problem(knode, path, "merge keys ('<<') are not supported: write the "
                              "keys out", bad=False)
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
            out[key] = self.value(vnode, path + (key,), depth + 1, aliased)
        return out


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
    def fail(msg: str) -> SpecError:
        return SpecError([Problem(path, 0, 0, msg)])

    too_big = (f"larger than {MAX_BYTES >> 20} MiB; a kvmnet spec is a few KiB: is this "
               "the right file?")
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_BYTES:
                raise fail(f"file is {size / 2**20:.1f} MiB, {too_big}")
            # Read at most one byte too many: pipes and devices (/dev/zero) have no size.
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a directory: give the spec file's path") from None
    except NotADirectoryError:
        parent = next((str(a) for a in reversed(Path(path).parents) if a.is_file()), "a parent")
        raise fail(f"no such file: {parent} is a file, not a directory") from None
    except PermissionError:
        raise fail("permission denied: run as a user who can read it, or fix its "
                   "permissions") from None
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise fail(f"not a usable path: {e}") from None
    if len(data) > MAX_BYTES:
        raise fail(f"input is {too_big}")
    return decode(data, path)


def decode(data: bytes, file: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError([Problem(file, 1, 1, "UTF-16 text: save the file as UTF-8")])
    if b"\x00" in data[:8192]:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise SpecError([Problem(file, line, 1, "binary data (NUL bytes): this is not a YAML "
                                 "spec file")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        # Columns count characters, as YAML's do, not bytes.
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8-sig", errors="replace")) + 1
        raise SpecError([Problem(file, line, col,
                                 f"not UTF-8 text (byte 0x{data[e.start]:02x}): save the file "
                                 "as UTF-8")]) from None


def compose(text: str, file: str, problems: list[Problem],
            bad: set[Path_] | None = None) -> tuple[Any, Positions]:
    """YAML text -> (plain data, positions); raises SpecError on syntax errors.

    Structural problems that still leave usable data (duplicate keys: the
    first one wins; a value that cannot be read becomes null) are appended to
    `problems` so validation can go on; the paths of unreadable values are
    added to `bad`.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        what = e.problem or "syntax error"
        lines = text.splitlines()
        at = lines[line - 1][col - 1:col] if 0 < line <= len(lines) else ""
        hint = _syntax_hint(what, at)
        c = e.context_mark
        opened = {"while parsing a flow sequence": "the '[' opened",
                  "while parsing a flow mapping": "the '{' opened",
                  "while scanning a quoted scalar": "the quote opened"}.get(e.context or "")
        if c is not None and opened and (c.line, c.column) != (line - 1, col - 1):
            # Where the unclosed '[', '{' or quote began is what the user must fix.
            hint += f" ({opened} at line {c.line + 1}, column {c.column + 1})"
        raise SpecError([Problem(file, line, col, f"YAML syntax: {what}{hint}")]) from None
    except (yaml.reader.ReaderError, UnicodeEncodeError) as e:
        # a character YAML does not allow anywhere (a lone surrogate: only text given
        # to load_text can hold one): say where, on one line
        if isinstance(e, UnicodeEncodeError):
            pos, ch = e.start, text[e.start]
        else:
            pos = e.position
            ch = chr(e.character) if isinstance(e.character, int) else str(e.character)
        pos = min(max(pos, 0), len(text))
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise SpecError([Problem(file, line, col, f"YAML: the character {ch!r} "
                                 f"(U+{ord(ch[:1] or ' '):04X}) is not allowed in YAML text: "
                                 "remove it")]) from None
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())  # one line: it must not forge another
        raise SpecError([Problem(file, 1, 1, f"YAML: {msg}")]) from None
    walker = _Walker(problems, file)
    if root is None:
        return {}, walker.pos
    try:
        data = walker.value(root, ())
    except _Stop:
        raise SpecError(sorted(problems, key=Problem.sort_key)) from None
    if bad is not None:
        bad.update(walker.bad)
    return data, walker.pos


def _syntax_hint(what: str, at: str) -> str:
    if "tab" in what or at == "\t":
        return ": indent with spaces, not tabs"
    if "another document" in what:
        return ": a spec is one YAML document: remove this '---' and what follows, or merge it"
    if "did not find expected key" in what:
        return ": this line is mis-indented: keys of one mapping must line up"
    if "mapping values are not allowed" in what:
        return ": a value containing ': ' must be quoted, or a key is mis-indented"
    if "could not find expected ':'" in what:
        return ": a key is missing its ':' or a line is mis-indented"
    return ""


def load_text(text: str, file: str = "<spec>") -> tuple[Spec, Positions]:
    problems: list[Problem] = []
    bad: set[Path_] = set()
    data, pos = compose(text, file, problems, bad)
    if data is None:  # '---' alone, or 'null': as empty as an empty file
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem(file, *pos.find(()),
                                "the spec must be a mapping with keys host, networks, guests"))
        raise SpecError(sorted(problems, key=Problem.sort_key))
    try:
        # strict: YAML already typed every value, so no coercion: `mtu: true` is not 1
        # and `mtu: "9000"` is not 9000 (the message says to drop the quotes).
        spec = Spec.model_validate(data, strict=True)
    except ValidationError as e:
        problems.extend(p for loc, p in _problems(e, pos, file)
                        if not any(loc[:len(b)] == b for b in bad))
    if problems:
        # set(): a value reached through several aliases is reported once.
        raise SpecError(sorted(set(problems), key=Problem.sort_key))
    return spec, pos


def load(path: str | os.PathLike[str]) -> tuple[Spec, Positions]:
    file = os.fspath(path)
    text = read_text(file)
    return load_text(text, file)


def _problems(err: ValidationError, pos: Positions, file: str
              ) -> Iterator[tuple[Path_, Problem]]:
    seen: set[tuple[Path_, str]] = set()
    for e in err.errors(include_url=False):
        loc, is_key = _clean_loc(e["loc"], pos)
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
            msg = f"unknown key {key!r}" + _did_you_mean(str(key), _allowed_keys(loc[:-1]))
        elif kind == "missing":
            # Point at the key that holds the mapping the key is missing from.
            line, col = pos.find(loc[:-1], key=True)
            msg = _message(e, loc)
        else:
            line, col = pos.find(loc, key=is_key)
            msg = _message(e, loc)
        where = format_path(loc)
        if (loc, msg) in seen:
            continue
        seen.add((loc, msg))
        yield loc, Problem(file, line, col, f"{where}: {msg}" if where else msg)


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")


def format_path(path: Sequence[str | int]) -> str:
    """networks.default.ipv4; a key that is not a plain name is quoted, so a key with a
    newline or ': ' in it cannot break (or forge) a FILE:LINE:COL line."""
    return ".".join(str(p) if isinstance(p, int) or _PLAIN.fullmatch(p) else repr(p)
                    for p in path)


def _clean_loc(loc: tuple[Any, ...], pos: Positions) -> tuple[Path_, bool]:
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


def _message(e: Any, loc: Path_) -> str:
    kind = e["type"]
    got = e.get("input")
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
        if kind == "list_type" and isinstance(got, str | int):
            hint = f": write a list, e.g. [{got}]"
        if kind == "model_type" and loc and loc[-1] == "lease_time":
            return f"expected a lease time like 1h, 30m, 600s or infinite, got {_describe(got)}"
        if isinstance(got, str) and (
                (kind in ("int_type", "float_type") and got.strip().lstrip("-").isdecimal()
                 and got.isascii())
                or (kind == "bool_type" and got.strip().lower() in ("true", "false"))):
            hint = ": write it without quotes"
        return f"expected {_TYPE_WORDS[kind]}, got {_describe(got)}{hint}"
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
    close = close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f": did you mean {close[0]!r}?"
    if options:
        return f": allowed keys here are {', '.join(options)}"
    return ""

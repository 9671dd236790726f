"""load: text -> Spec, or every problem at once with FILE:LINE:COL.

PyYAML's C loader composes a node tree whose nodes carry line and column; we walk it
once into plain Python values while recording where each value came from (`Positions`),
then let the models (pydantic) type it and map each of its errors back to a position.
Duplicate keys, which YAML loaders silently accept, and numbers YAML 1.1 reads otherwise
than they look (kvmnet.spec.scalars) are found during the walk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kvmnet.errors import Problem, SpecError
from kvmnet.model.spec import Spec
from kvmnet.spec.errors import Path_ as Path_  # (re-exported: spec.check, spec.hosts)
from kvmnet.spec.errors import format_path as format_path
from kvmnet.spec.errors import problems as _problems
from kvmnet.spec.positions import Positions as Positions  # (re-exported)
from kvmnet.spec.scalars import LOADER as _Loader
from kvmnet.spec.scalars import construct, misread

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASED = 100_000  # values that YAML aliases may expand to

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
        # Paths of mappings with a key left out (merge key, complex key, duplicate).
        self.partial: set[Path_] = set()
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._expanded = 0

    def _problem(self, node: yaml.Node, path: Path_, msg: str, bad: bool = True) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.file, m.line + 1, m.column + 1, msg))
        (self.bad if bad else self.partial).add(path)

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
            scalar = construct(node)
        except yaml.constructor.ConstructorError as e:
            self._problem(node, path, f"YAML: {e.problem}: kvmnet specs use no tags; "
                          "remove it")
        except Exception:  # noqa: BLE001 - '!!int abc', '!!bool maybe' ... fail in many ways
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self._problem(node, path, f"YAML: {node.value!r} is not a valid {tag} value: "
                          f"fix it or remove the {tag} tag")
        else:
            why = misread(node.value, scalar, path)   # 22:22 as 1342, 011000 as 4608
            if why is None:
                return scalar
            self._problem(node, path, why)
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
                self.problems.append(Problem(self.file, km.line + 1, km.column + 1,
                                             f"duplicate key {key!r} (first at line "
                                             f"{first[0]}): remove one of them or merge their "
                                             "contents"))
                self.partial.add(path + (key,))   # (the first one is used)
                continue
            self.pos.keys[path + (key,)] = (km.line + 1, km.column + 1)
            out[key] = self.value(vnode, path + (key,), depth + 1, aliased)
        return out


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
    except IsADirectoryError:  # (a folder given as such is read by spec.sources)
        raise fail("is a directory: give the spec file's path, or the folder itself") from None
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
            bad: set[Path_] | None = None, partial: set[Path_] | None = None
            ) -> tuple[Any, Positions]:
    """YAML text -> (plain data, positions); raises SpecError on syntax errors.

    Structural problems that still leave usable data (duplicate keys: the
    first one wins; a value that cannot be read becomes null) are appended to
    `problems` so validation can go on; the paths of unreadable values are
    added to `bad`, those of mappings with a key left out to `partial`.
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
    if partial is not None:
        partial.update(walker.partial)
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


@dataclass
class Loaded:
    """A spec file read as far as it goes. `problems`: its YAML and type errors, sorted.
    `spec`: the model of what is left once the values those errors are about are left
    out (a key dropped, so its default applies; a list item or a named entry dropped;
    a mapping that cannot be built without them dropped in turn), so the semantic checks
    can still look at the rest. `pruned`: the document paths of what was left out or
    is not as written (a list that lost an item counts as changed as a whole: its later
    items moved up; a mapping with a duplicate or merge key; an unreadable value)."""

    spec: Spec
    pos: Positions
    problems: list[Problem]
    pruned: frozenset[Path_] = frozenset()


def load_text(text: str, file: str = "<spec>") -> tuple[Spec, Positions]:
    """A valid spec, or SpecError with every YAML and type error of the text."""
    loaded = _load(text, file, partial_ok=False)
    if loaded.problems:
        raise SpecError(loaded.problems)
    return loaded.spec, loaded.pos


def load_text_partial(text: str, file: str = "<spec>") -> Loaded:
    """Like load_text, but type errors are returned with the model of the rest of the
    file; SpecError only when no model can be built (YAML syntax, not a mapping)."""
    return _load(text, file, partial_ok=True)


def load(path: str | os.PathLike[str]) -> tuple[Spec, Positions]:
    """A spec file, a folder of them (spec.sources) or `-` (standard input)."""
    loaded = load_partial(path)
    if loaded.problems:
        raise SpecError(loaded.problems)
    return loaded.spec, loaded.pos


def load_partial(path: str | os.PathLike[str]) -> Loaded:
    file = os.fspath(path)
    if file == "-":
        from kvmnet.spec.sources import STDIN_NAME, read_stdin

        return load_text_partial(decode(read_stdin(MAX_BYTES), STDIN_NAME), STDIN_NAME)
    return _load(None if os.path.isdir(file) else read_text(file), file, partial_ok=True)


def _load(text: str | None, file: str, partial_ok: bool) -> Loaded:
    """text as the spec, or (None) the folder `file`'s files merged (spec.sources)."""
    problems: list[Problem] = []
    bad: set[Path_] = set()
    partial: set[Path_] = set()
    if text is None:
        from kvmnet.spec.sources import compose_folder

        data, pos = compose_folder(Path(file), lambda f: compose(
            read_text(f), f, problems, bad, partial), problems, partial)
    else:
        data, pos = compose(text, file, problems, bad, partial)
    if data is None:  # '---' alone, or 'null': as empty as an empty file
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem(file, *pos.find(()),
                                "the spec must be a mapping with keys host, networks, guests"))
        raise SpecError(sorted(problems, key=Problem.sort_key))
    pruned = frozenset(bad | partial)   # (what YAML could not give as written)
    try:
        # strict: YAML already typed every value, so no coercion: `mtu: true` is not 1
        # and `mtu: "9000"` is not 9000 (the message says to drop the quotes).
        spec = Spec.model_validate(data, strict=True)
    except ValidationError as e:
        problems.extend(p for loc, p in _problems(e, pos, file)
                        if not any(loc[:len(b)] == b for b in bad))
        spec, rest = _rest(data, e) if partial_ok else (Spec(), frozenset({()}))
        pruned |= rest
    # set(): a value reached through several aliases is reported once.
    return Loaded(spec, pos, sorted(set(problems), key=Problem.sort_key), pruned)


# -- what is left of a spec with type errors ---------------------------------------

MAX_PRUNE_ROUNDS = 16
_GONE: Any = object()   # marks a value to leave out, until its container is swept


def _rest(data: dict[str, Any], err: ValidationError) -> tuple[Spec, frozenset[Path_]]:
    """The Spec of data without the values err is about, and their paths.

    A round leaves out what each error points at; leaving a value out can make the
    mapping that held it invalid in turn (a required key gone, a model rule that
    needed it), which the next round's errors point at. Those later errors are never
    reported: they exist only because of the pruning. (data is changed in place.)"""
    pruned: set[Path_] = set()
    for _ in range(MAX_PRUNE_ROUNDS):
        swept: list[dict[Any, Any] | list[Any]] = []
        for e in err.errors(include_url=False):
            path = _leave_out(data, e["loc"], swept)
            if path is None:
                return Spec(), frozenset({()})
            pruned.add(path)
        for c in swept:
            if isinstance(c, dict):
                for k in [k for k, v in c.items() if v is _GONE]:
                    del c[k]
            else:
                c[:] = [v for v in c if v is not _GONE]
        try:
            return Spec.model_validate(data, strict=True), frozenset(pruned)
        except ValidationError as e:
            err = e
    return Spec(), frozenset({()})   # (not reached with the spec's nesting)


def _leave_out(data: Any, loc: tuple[Any, ...], swept: list[Any]) -> Path_ | None:
    """Mark the deepest value of data that loc reaches as gone; its path, or None if
    that is the whole document. A loc can go further than data: into a single value
    the model wraps into a list (dhcp: RANGE), a key that is missing (the mapping
    lacking it goes), a mapping's key itself ('[key]': its entry goes)."""
    parents: list[Any] = []
    node = data
    path: list[str | int] = []
    for i, step in enumerate(loc):
        if step == "[key]" and i == len(loc) - 1:
            break   # (pydantic's marker, always last; a key the user named so is not)
        if isinstance(node, dict) and step in node:
            pass
        elif isinstance(node, list) and type(step) is int and 0 <= step < len(node):
            pass
        else:
            break
        parents.append(node)
        path.append(step)
        node = node[step]
    if not path:
        return None
    parent = parents[-1]
    parent[path[-1]] = _GONE
    swept.append(parent)
    if isinstance(parent, list):
        path.pop()   # the list as a whole changed: its later items moved up
    return tuple(path)

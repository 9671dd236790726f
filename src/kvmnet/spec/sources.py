"""Where a spec comes from besides one file: `-` (standard input) and a folder of YAML
files merged into one spec, as netplan merges /etc/netplan/*.yaml.

A folder's files (*.yaml and *.yml, not hidden, in name order) are each read and
composed on their own; their top-level mappings are then merged key by key:
`networks`, `guests`, `hosts` and `host.bridges`, `host.bonds` and
`host.vlans` by name, `host.renderer` and `ovn`
from the one file that sets them. A name in two files is an error at the second,
pointing at the first: unlike netplan, kvmnet does not let a later file override part
of an earlier one, so no file silently changes what another says. Every position is
kept with its own file (Positions.files), so each message names the file it is in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvmnet.errors import Problem, SpecError
from kvmnet.spec.positions import Path_, Positions

STDIN = "-"
STDIN_NAME = "<stdin>"
_BY_NAME = (("networks",), ("guests",), ("hosts",), ("host", "bridges"), ("host", "bonds"),
            ("host", "vlans"))
_ONE_FILE = (("host", "renderer"), ("ovn",))
_stdin: bytes | None = None   # standard input, read once a process


def read_stdin(limit: int) -> bytes:
    """The spec on standard input (spec.load decodes it as it does a file's bytes)."""
    global _stdin
    if _stdin is None:
        _stdin = sys.stdin.buffer.read(limit + 1)
    if len(_stdin) > limit:
        raise SpecError([Problem(STDIN_NAME, 0, 0, f"input is larger than {limit >> 20} "
                                 "MiB: a kvmnet spec is a few KiB")])
    return _stdin


def spec_files(folder: Path) -> list[Path]:
    """The YAML files of a spec folder, in name order; SpecError when there is none."""
    files = sorted(p for p in folder.iterdir()
                   if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
                   and p.is_file())
    if not files:
        raise SpecError([Problem(str(folder), 0, 0, "a folder with no spec in it: put the "
                                 "spec in one or more *.yaml files there")])
    return files


def compose_folder(folder: Path, compose: Callable[[str], tuple[Any, Positions]],
                   problems: list[Problem], partial: set[Path_]
                   ) -> tuple[dict[str, Any], Positions]:
    """Every file of the folder composed (by spec.load: read, YAML, positions) and
    merged: (data, positions that know each value's file)."""
    data: dict[str, Any] = {}
    pos = Positions()
    for path in spec_files(folder):
        file = str(path)
        one, at = compose(file)
        if one is None:
            continue
        if not isinstance(one, dict):
            problems.append(Problem(file, *at.find(()), "a spec file must be a mapping with "
                                    "keys host, networks, guests"))
            continue
        _merge(data, pos, one, at, file, problems, partial)
    return data, pos


def _merge(data: dict[str, Any], pos: Positions, one: dict[str, Any], at: Positions,
           file: str, problems: list[Problem], partial: set[Path_]) -> None:
    """Merge one file's data (and positions) into data."""
    taken: set[Path_] = set()
    for path in _BY_NAME:
        mine, theirs = _get(one, path), _get(data, path)
        if not isinstance(mine, dict) or not isinstance(theirs, dict):
            continue
        for name in list(mine):
            if name in theirs:
                first = f"{pos.file_of(path + (name,), '?')}:{pos.find(path + (name,), True)[0]}"
                problems.append(Problem(file, *at.find(path + (name,), True),
                                        f"{'.'.join(path)}.{name}: also in {first}: "
                                        "define it in one file only"))
                partial.add(path + (name,))
                del mine[name]
            else:
                theirs[name] = mine.pop(name)
                taken.add(path + (name,))
    for path in _ONE_FILE:
        mine, theirs = _get(one, path), _get(data, path)
        if mine is not None and theirs is not None:
            first = f"{pos.file_of(path, '?')}:{pos.find(path, True)[0]}"
            problems.append(Problem(file, *at.find(path, True),
                                    f"{'.'.join(path)}: also set in {first}: set it in "
                                    "one file only"))
            _drop(one, path)
    _deep_add(data, one)
    for table, src in ((pos.at, at.at), (pos.keys, at.keys)):
        for p, lc in src.items():
            if p not in table or any(p[:len(t)] == t for t in taken):
                table[p] = lc
                if p:
                    pos.files[p] = file


def _get(data: dict[str, Any], path: Path_) -> Any:
    node: Any = data
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


def _drop(data: dict[str, Any], path: Path_) -> None:
    parent = _get(data, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _deep_add(data: dict[str, Any], one: dict[str, Any]) -> None:
    """What is left of one (nothing named twice) into data: mappings merged."""
    for key, value in one.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _deep_add(data[key], value)
        elif key not in data:
            data[key] = value

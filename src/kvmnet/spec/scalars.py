"""YAML scalars: constructed with YAML 1.1's safe rules, and numbers YAML reads
otherwise than they look refused where they are written.

PyYAML follows YAML 1.1, whose integers are more than decimal digits: `22:22` is the
base-60 number 1342 (docker's HOST:GUEST port pair becomes port 1342), `011000` the
octal number 4608 (an MTU of 4608, not 11000), `0x2328`, `0b1010` and `9_000` are
numbers too, and an unquoted all-digit MAC address is a base-60 number. Each of them is
a valid value of some field, so the models cannot tell; only the text can. The loader
asks misread() about every number it reads: a spec writes a number in plain decimal
digits (a sign allowed), or quotes it as text.
"""

from __future__ import annotations

import re
from typing import Any, get_args

import yaml

from kvmnet.spec.errors import annotation_at, format_path
from kvmnet.spec.positions import Path_

try:
    LOADER: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    LOADER = yaml.SafeLoader


class _Scalar(LOADER):  # type: ignore[misc]
    """Constructs one scalar with YAML 1.1 safe rules (ints, bools, null, str)."""

    _inst: Any = None


def construct(node: yaml.Node) -> Any:
    """The value of one scalar node (raises what PyYAML raises for a bad tagged value)."""
    if _Scalar._inst is None:
        _Scalar._inst = _Scalar("")
    return _Scalar._inst.construct_object(node, deep=True)


_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)\Z")
_PORT_KEYS = ("host_port", "guest_port", "ports", "port")


def misread(text: str, value: object, path: Path_) -> str | None:
    """Why the number `value`, written as `text` at `path`, is refused; None when it
    is written as the decimal it is (or is no number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    t = text.strip()
    if isinstance(value, float) and ":" not in t:
        return None   # (a float in an integer field is a type error of its own)
    if isinstance(value, int) and _DECIMAL.match(t):
        return None
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    where = f"{format_path(path)}: " if path else ""
    if key == "mac" and ":" in t:
        return (f"{where}a MAC address must be quoted: unquoted, YAML reads {t} as the "
                f"number {value}; write \"{t}\"")
    tp = annotation_at(path)
    if tp is None:
        return None   # no field: the unknown key is the error to report
    if _mentions(tp, str) and not _mentions(tp, int):
        hint = f"write \"{t}\" in quotes"       # a text field: the text was meant
    else:
        hint = _number_hint(t, value, key)
    return f"{where}unquoted, YAML 1.1 reads {t} as {_kind(t)} {value}: {hint}"


def _mentions(tp: Any, cls: type) -> bool:
    """Does the annotation tp take values of cls (through unions, lists, Annotated)?"""
    return tp is cls or any(_mentions(a, cls) for a in get_args(tp))


def _kind(t: str) -> str:
    digits = t.lstrip("+-")
    if ":" in t:
        return "the base-60 number"
    if digits[:2] in ("0x", "0X"):
        return "the hexadecimal number"
    if digits[:2] in ("0b", "0B"):
        return "the binary number"
    if digits.startswith("0"):
        return "the octal number"
    return "the number"


def _number_hint(t: str, value: object, key: str) -> str:
    """What to write instead in a number's field: what the text most likely meant."""
    if ":" in t:
        if key == "host_port" and t.count(":") == 1:
            host, guest = t.split(":")
            return (f"a forward from host port {host} to guest port {guest} is written "
                    f"host_port: {host} and guest_port: {guest} (docker's HOST:GUEST is two "
                    "keys here)")
        if key in _PORT_KEYS:
            return "a port is one number, a range is FIRST-LAST, e.g. 8000-8010"
        if key == "lease_time":
            return "write a lease time like 1h, 30m, 600s or infinite"
        return "write the number in decimal digits"
    digits = t.replace("_", "")
    if _kind(t) == "the octal number" and digits.lstrip("+-").isdigit():
        return f"write {int(digits, 10)} (a leading 0 makes it octal)"
    return f"write it as {value}"

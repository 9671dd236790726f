"""One netlink call with a message that names the step (migrate, lower and undo share
it), a link's index by name, and a recorded route as the arguments of a route call."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from kvmnet.apply.bridge.links import Route
from kvmnet.errors import LiveError

T = TypeVar("T")
TABLE_LOCAL = 255


def nl(what: str, fn: Callable[..., T], *args: Any, ok: tuple[int, ...] = (),
        **kw: Any) -> T | None:
    """Run one netlink call; a NetlinkError becomes a LiveError naming the step
    (error codes in `ok` are expected: the call had nothing to do)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return fn(*args, **kw)
    except NetlinkError as e:
        if e.code in ok:
            return None
        raise LiveError(f"{what}: {os.strerror(e.code) if e.code else e}") from None


def link_index(ipr: Any, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise LiveError(f"link {name} is gone")
    return int(found[0])


def table_of(r: Any) -> int:
    t = r.get_attr("RTA_TABLE")
    return int(t if t is not None else r["table"])


def route_args(r: Route, oif: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"family": r.family, "dst_len": r.dst_len, "table": r.table,
                          "proto": r.proto, "scope": r.scope, "type": r.type, "tos": r.tos,
                          "oif": oif}
    for key in ("dst", "gateway", "priority", "prefsrc"):
        if getattr(r, key) is not None:
            kw[key] = getattr(r, key)
    if r.flags:
        kw["flags"] = r.flags
    if r.pref is not None:
        kw["RTA_PREF"] = r.pref
    if r.metrics:
        kw["metrics"] = {"attrs": [[k, v] for k, v in r.metrics.items()]}
    return kw

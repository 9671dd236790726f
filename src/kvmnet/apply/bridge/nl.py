"""One netlink call with a message that names the step (migrate, lower and undo share
it), and a link's index by name."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from kvmnet.errors import LiveError

T = TypeVar("T")


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

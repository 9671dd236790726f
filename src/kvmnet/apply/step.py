"""What every apply handler gets: the backend to write through and what it needs besides;
and what running one action gives (Result).

A handler is `(Action, Step) -> str` (a note for the report, '' when none); it
raises LiveError when the change failed. kvmnet.apply.runner holds the table from
action kind to handler.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kvmnet.apply.bridge.options import HostOptions
from kvmnet.backend.base import Backend
from kvmnet.model.live import LiveState
from kvmnet.plan import Action

if TYPE_CHECKING:
    from kvmnet.backend.ovsdb import NbSessions


@dataclass
class Result:
    action: Action
    status: str              # done | skipped | failed
    seconds: float = 0.0
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        return {**self.action.as_dict(), "status": self.status,
                "seconds": round(self.seconds, 3), "message": self.message}


@dataclass
class Step:
    backend: Backend
    live: LiveState                    # as plan read it (running guests' taps: reconnect)
    netns: str | None = None           # host-side effects happen in this network namespace
    host_options: HostOptions | None = None
    # networks this apply defined (kvmnet.apply.together undoes only these)
    defined: set[str] = field(default_factory=set)
    # held around a create's define: kvmnet.apply.together has the defines of creates
    # that run side by side happen in plan order (libvirt names bridges in define order)
    turn: Callable[[Action], AbstractContextManager[object]] = field(
        default=lambda _a: nullcontext(), repr=False)
    _nb: NbSessions | None = field(default=None, repr=False)

    @property
    def host(self) -> HostOptions:
        """--root and --confirm-timeout (defaults when apply was given none)."""
        if self.host_options is None:
            self.host_options = HostOptions()
        return self.host_options

    def nb(self) -> NbSessions:
        """OVN's northbound connections, opened when the first ovn.* action runs."""
        if self._nb is None:
            from kvmnet.backend.ovsdb import NbSessions

            self._nb = NbSessions()
        return self._nb

    def close(self) -> None:
        if self._nb is not None:
            self._nb.close()
            self._nb = None


Handler = Callable[[Action, Step], str]

"""The plan's values (Plan, Action, Update, Finding) and the context its steps share."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from kvmnet.model.live import LinkDns, LiveState
from kvmnet.model.spec import Host, Spec

if TYPE_CHECKING:  # start-up: OVN's and the firewall's values load when they are used
    from kvmnet.model.forward import Fwd
    from kvmnet.model.overlay import Change

Impact = Literal["live", "restart", "disruptive", "host"]
# an action's sign in a plan's listing, by the verb of its kind (network.create: +)
SIGNS = {"create": "+", "remove": "-", "attach": "+", "detach": "-"}


@dataclass(frozen=True)
class Update:
    """One virNetworkUpdate call."""

    command: Literal["add-last", "delete", "modify"]
    section: Literal["ip-dhcp-host", "dns-host", "ip-dhcp-range", "dns-txt", "dns-srv"]
    parent_index: int
    xml: str


@dataclass(frozen=True)
class Action:
    kind: str
    target: str
    impact: Impact
    summary: str
    details: tuple[str, ...] = ()
    xml: str = ""
    updates: tuple[Update, ...] = ()
    autostart: bool | None = None
    restart: bool = False
    domain: str | None = None
    mac: str | None = None
    live: bool = False                       # also change the running guest / network
    managed_macs: tuple[str, ...] | None = None
    needs_allow_destroy: bool = False
    skipped: str | None = None
    host: Host | None = None                # host.bridge: the spec's host section
    ovn: Change | None = None               # ovn.*: one northbound transaction (OVN)
    forwards: tuple[Fwd, ...] = ()          # firewall.sync: every forward the host should hold
    text: str = ""                          # host.names: the new /etc/nsswitch.conf
    link: LinkDns | None = None             # host.resolved: the bridge's DNS in resolved

    @property
    def marker(self) -> str:
        """What a plan shows in brackets: the impact, or why the action is skipped."""
        return f"skipped: {self.skipped}" if self.skipped else self.impact

    @property
    def sign(self) -> str:
        """+ adds, - removes, ~ changes (the CLI's plan and the web page show it)."""
        return SIGNS.get(self.kind.partition(".")[2], "~")

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "kind": self.kind, "target": self.target, "impact": self.impact,
            "summary": self.summary, "details": list(self.details),
        }
        if self.needs_allow_destroy:
            d["needs_allow_destroy"] = True
        if self.skipped:
            d["skipped"] = self.skipped
        return d


@dataclass(frozen=True)
class Finding:
    """A plan-time problem about a spec path (the CLI maps it to FILE:LINE:COL)."""

    path: tuple[str | int, ...]
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def changes(self) -> bool:
        return any(a.skipped is None for a in self.actions)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


@dataclass
class Ctx:
    """What one make_plan call has read and found so far; each step appends to it."""

    spec: Spec
    live: LiveState
    adopt: frozenset[str]
    macs: dict[tuple[str, int], str]
    scope: tuple[str, ...] = ()
    actions: list[Action] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def error(self, path: tuple[str | int, ...], msg: str) -> None:
        self.findings.append(Finding(path, msg))

    def warn(self, path: tuple[str | int, ...], msg: str) -> None:
        self.findings.append(Finding(path, msg, "warning"))


def in_scope(name: str, scope: tuple[str, ...]) -> bool:
    return not scope or any(fnmatch.fnmatchcase(name, g) for g in scope)

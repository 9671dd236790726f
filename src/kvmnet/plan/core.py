"""The plan's values (Plan, Action, Update, Finding) and the context its steps share."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from kvmnet.model.live import LinkDns, LiveNetwork, LiveState, NicRecord
from kvmnet.model.spec import Host, Spec
from kvmnet.model.vlan import Vlans
from kvmnet.plan.fields import FieldChange

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
    nic_records: tuple[NicRecord, ...] | None = None   # the domain's record of kvmnet's NICs
    needs_allow_destroy: bool = False
    skipped: str | None = None
    host: Host | None = None                # host.bridge: the spec's host section
    ovn: Change | None = None               # ovn.*: one northbound transaction (OVN)
    forwards: tuple[Fwd, ...] = ()          # firewall.sync: every forward the host should hold
    text: str = ""                          # host.names: the new /etc/nsswitch.conf
    link: LinkDns | None = None             # host.resolved: the bridge's DNS in resolved
    vlans: Vlans | None = None              # nic.*: the VLANs kvmnet sets on the NIC's tap
    set_vlans: bool = False                 # nic.*: and it sets them (a running guest)
    changes: tuple[FieldChange, ...] = ()   # each field that differs (plan.fields)

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
            "changes": [c.as_dict() for c in self.changes],
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
class LeftAlone:
    """An object kvmnet manages for another owner (or an owner from before owners):
    this spec neither changes nor removes it, and the plan says so."""

    target: str                   # network/NAME, guest/NAME/MAC
    owner: str | None             # None: marked by a kvmnet from before owners
    note: str = ""                # how to take it over, when that is the question

    def text(self) -> str:
        who = f"owned by {self.owner}" if self.owner else "marked by a kvmnet from before owners"
        return f"{self.target} ({who})" + (f": {self.note}" if self.note else "")

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "owner": self.owner, "note": self.note}


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    findings: tuple[Finding, ...] = ()
    left_alone: tuple[LeftAlone, ...] = ()
    owner: str | None = None

    @property
    def changes(self) -> bool:
        return any(a.skipped is None for a in self.actions)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def counts(self) -> dict[str, int]:
        """terraform's add / change / destroy, kvmnet's impacts, skipped actions and
        those apply refuses without --allow-destroy (the plan's summary line, its JSON)."""
        n = [a for a in self.actions if not a.skipped]
        verb = [a.kind.partition(".")[2] for a in n]
        c = {"add": sum(1 for v in verb if v in ("create", "attach")),
             "destroy": sum(1 for v in verb if v in ("remove", "detach"))}
        c["change"] = len(n) - c["add"] - c["destroy"]
        c.update({k: sum(1 for a in n if a.impact == k) for k in ("live", "restart",
                                                                  "disruptive")})
        c["skipped"] = len(self.actions) - len(n)
        c["needs_allow_destroy"] = sum(1 for a in n if a.needs_allow_destroy)
        return c


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
    left_alone: list[LeftAlone] = field(default_factory=list)

    @property
    def owner(self) -> str | None:
        return self.spec.owner

    def others(self, owner: str | None) -> bool:
        """Is an object of `owner` someone else's? A mark from before owners (None) is
        nobody's: the spec that lists the object claims it."""
        return owner is not None and owner != self.owner

    def removable(self, name: str, ln: LiveNetwork) -> bool:
        """May this spec remove a managed network it does not list? Its own owner's
        (within --scope); one marked before owners only when --adopt or --scope names
        it; another owner's only with --adopt NAME."""
        if not ln.managed or not in_scope(name, self.scope):
            return False
        if ln.owner == self.owner or name in self.adopt:
            return True
        return ln.owner is None and bool(self.scope)

    def error(self, path: tuple[str | int, ...], msg: str) -> None:
        self.findings.append(Finding(path, msg))

    def warn(self, path: tuple[str | int, ...], msg: str) -> None:
        self.findings.append(Finding(path, msg, "warning"))


def in_scope(name: str, scope: tuple[str, ...]) -> bool:
    return not scope or any(fnmatch.fnmatchcase(name, g) for g in scope)

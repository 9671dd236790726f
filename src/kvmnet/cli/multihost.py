"""plan and apply of a spec with hosts: (kvmnet.service.multihost): a section per host, a
summary, exit codes. cli_live's plan/apply hand over here when the spec has hosts:.

Exit codes: 1 when any host (or OVN northbound) failed, after every other one was
planned or applied; with --detailed-exitcode 2 when any has changes and none failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from kvmnet.apply.bridge.options import HostOptions
from kvmnet.cli.output import MARK, err, out, print_problems, show_plan, styled
from kvmnet.errors import KvmnetError, Problem
from kvmnet.model.spec import Spec
from kvmnet.plan import Action
from kvmnet.service.multihost import WORKERS, Outcome, Session, Summary
from kvmnet.service.views import hosts_plan_data
from kvmnet.spec.load import Positions


def refuse_mixed(spec: Spec, connect_: str | None, netns: str | None,
                 only: list[str] | None) -> None:
    if not spec.hosts:
        raise KvmnetError("--host NAME picks hosts of the spec's hosts: section, and this spec "
                          "has none: it is for one host, reached with -c URI")
    if connect_:
        raise KvmnetError("-c/--connect and a spec with hosts: do not mix: the spec gives "
                          "each host's URI; drop -c (pick hosts with --host NAME)")
    if netns:
        raise KvmnetError("--netns and a spec with hosts: do not mix: set netns: under "
                          "hosts.NAME in the spec")


def _session(spec: Spec, pos: Positions, file: Path, only: list[str] | None,
             adopt: list[str] | None, scope: list[str] | None,
             lock_wait: float | None = None) -> Session:
    return Session(spec, pos, str(file), only=tuple(only or ()),
                   adopt=frozenset(adopt or ()), scope=tuple(scope or ()),
                   lock_wait=lock_wait, workers=WORKERS,
                   on_wait=err.print)


def plan_hosts(file: Path, spec: Spec, pos: Positions, warnings: list[Problem], *,
               connect_: str | None, netns: str | None, only: list[str] | None,
               as_json: bool, detailed_exitcode: bool, adopt: list[str] | None,
               scope: list[str] | None) -> int:
    """`kvmnet plan FILE` of a spec with hosts:; returns the exit code."""
    refuse_mixed(spec, connect_, netns, only)
    t0 = time.monotonic()
    with _session(spec, pos, file, only, adopt, scope) as s:
        s.plan()
        summary = s.summary(time.monotonic() - t0)
    if as_json:
        out.json(hosts_plan_data(s, summary, str(file), warnings))
    else:
        print_problems(warnings)
        for o in s.outcomes:
            _section(o)
        _summary(summary, "plan")
    if summary.failures:
        return 1
    return 2 if detailed_exitcode and summary.changes else 0


def apply_hosts(file: Path, spec: Spec, pos: Positions, warnings: list[Problem], *,
                connect_: str | None, netns: str | None, only: list[str] | None,
                as_json: bool, yes: bool, allow_destroy: bool, adopt: list[str] | None,
                scope: list[str] | None, lock_wait: float, host: HostOptions) -> int:
    """`kvmnet apply FILE` of a spec with hosts:: plan all, ask once, apply all."""
    refuse_mixed(spec, connect_, netns, only)
    t0 = time.monotonic()
    with _session(spec, pos, file, only, adopt, scope, lock_wait) as s:
        s.plan()
        s.refuse_unsafe(allow_destroy)
        if not as_json:
            print_problems(warnings)
            for o in s.outcomes:
                _section(o)
        pending = s.pending()
        if pending and not yes:
            if not sys.stdin.isatty():
                raise KvmnetError("not applying: stdin is not a terminal; pass --yes to apply "
                                  "without asking")
            names = ", ".join(o.target.name for o in pending)
            if not typer.confirm(f"Apply these changes to {names}?", default=False):
                raise typer.Abort()
        if pending:
            s.apply(allow_destroy, None if as_json else _progress, host)
        summary = s.summary(time.monotonic() - t0)
    if as_json:
        out.json(hosts_plan_data(s, summary, str(file), warnings, applied=True))
    else:
        if pending:
            out.print("")
            for o in pending:
                _applied(o)
        _summary(summary, "apply")
    return 1 if summary.failures else 0


# -- text ------------------------------------------------------------------------

def _title(o: Outcome) -> str:
    t = o.target
    return f"{t.name} ({t.uri})"


def _section(o: Outcome) -> None:
    out.print("", styled((f"== {_title(o)} ==", "bold")))
    if o.planned is not None:
        print_problems(o.planned.warnings)
    print_problems(o.problems)
    if o.planned is not None:
        show_plan(o.planned.plan, o.planned.live.uri)
    if o.error is not None and o.report is None:
        out.print(styled(MARK["failed"], f": {o.error}"))


def _progress(name: str, i: int, total: int, a: Action, res: Any) -> None:
    if res is None:
        return
    extra = f" ({res.message})" if res.message else ""
    err.print(styled(f"{name}: [{i}/{total}] {a.kind} {a.target} ... ", MARK[res.status],
                     f" {res.seconds:.2f}s{extra}"))


def _applied(o: Outcome) -> None:
    if o.report is not None and o.report.ok:
        done = sum(1 for r in o.report.results if r.status == "done")
        out.print(f"{o.target.name}: applied {done} change(s) with {o.report.writes} write "
                  f"call(s) in {o.apply_s:.2f}s.")
    else:
        out.print(styled(f"{o.target.name}: ", MARK["failed"], f": {o.error or '?'}"))


def _summary(s: Summary, verb: str) -> None:
    def names(xs: tuple[str, ...]) -> str:
        return f" ({', '.join(xs)})" if xs else ""

    first = (f"{len(s.applied)} applied{names(s.applied)}" if verb == "apply" else
             f"{len(s.changed)} with changes{names(s.changed)}")
    parts = [first, f"{len(s.unchanged)} without changes",
             f"{len(s.failed)} failed{names(s.failed)}"]
    text = f"\n{s.hosts} host(s): {', '.join(parts)}"
    if s.ovn is not None:
        text += f"; OVN northbound: {s.ovn}"
    out.print(text + f". {s.seconds:.2f}s.")
    for g in s.unplaced:
        err.print(f"warning: guest {g} is defined on none of its hosts: its NICs are not "
                  "attached anywhere (its DHCP reservations are still made)")
    if s.failures:
        failed = list(s.failed) + (["OVN northbound"] if s.ovn == "failed" else [])
        err.print(f"kvmnet: error: {verb} failed on {', '.join(failed)}; the other hosts "
                  "were not held up by it (see each section above)")

"""CLI commands that talk to libvirt: plan, apply, import, demo (show and leases: cli.show)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kvmnet.cli import complete
from kvmnet.cli.common import ConnectOpt, JsonOpt, SpecFile, commands, connect
from kvmnet.cli.output import MARK, err, out, print_problems, show_plan, styled
from kvmnet.errors import KvmnetError

if TYPE_CHECKING:  # start-up: libvirt, lxml and the models load only when a command runs

    from kvmnet.backend.libvirt import Connection
    from kvmnet.errors import Problem
    from kvmnet.model.spec import Spec
    from kvmnet.plan import Action
    from kvmnet.spec.load import Positions

app = commands()

AdoptOpt = Annotated[list[str] | None, typer.Option(
    "--adopt", metavar="NAME", autocompletion=complete.networks,
    help="Take over this existing unmanaged network (same as adopt: true in the spec). "
         "Repeatable.")]
NetnsOpt = Annotated[str | None, typer.Option(
    "--netns", metavar="NAME", help="Read and change host links inside this network "
                                    "namespace (labs, tests).")]

ScopeOpt = Annotated[list[str] | None, typer.Option(
    "--scope", metavar="GLOB", help="Share the host with other specs: only networks whose "
                                    "names match GLOB are removed when the spec leaves them "
                                    "out (default: every network kvmnet manages). "
                                    "Repeatable.")]
RootOpt = Annotated[Path, typer.Option(
    "--root", metavar="DIR", help="Where kvmnet's host files are (port forwards' state "
                                  "file and libvirt hook) instead of /.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Don't ask for confirmation.")]
AllowDestroyOpt = Annotated[bool, typer.Option(
    "--allow-destroy", help="Allow removing networks that guests are attached to.")]
LockWaitOpt = Annotated[float, typer.Option(
    "--lock-wait", metavar="SECONDS", help="How long to wait for another apply.")]
PARALLEL = 3   # libvirtd on 2 CPUs: 3 side by side was fastest (bench.parallel)
ParallelOpt = Annotated[int, typer.Option(
    "--parallel", metavar="N", min=1, max=32,
    help="Create up to N new networks at once (libvirt starts them side by side); every "
         "other action runs one at a time, in the plan's order, after what comes before "
         "it. Output is in plan order, and a failure stops apply where a one-at-a-time "
         "run stops. 1: one action at a time.")]
HostOpt = Annotated[list[str] | None, typer.Option(
    "--host", metavar="NAME", autocompletion=complete.hosts,
    help="A spec with hosts: only this host of it (default: every host). Repeatable.")]


@app.command()
def plan(
    file: SpecFile,
    connect_: ConnectOpt = None,
    as_json: JsonOpt = False,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 2 when there are changes, 0 when none.")] = False,
    allow_destroy: Annotated[bool, typer.Option(
        "--allow-destroy", help="Plan as apply --allow-destroy would: a removal of a "
                                "network with guests attached does not make plan exit 3."
    )] = False,
    adopt: AdoptOpt = None,
    netns: NetnsOpt = None,
    scope: ScopeOpt = None,
    host_: HostOpt = None,
    root: RootOpt = Path("/"),
) -> None:
    """Show what apply would change, each action marked live / restart / disruptive.

    Reads the live state (networks, domains, host links), diffs it with FILE
    and prints ordered actions and a summary (N to add, M to change, K to
    destroy). Changes nothing. Exits 3 when apply would refuse the plan without
    --allow-destroy (a network with guests attached would be removed; pass
    --allow-destroy to plan as that apply would). A spec with hosts: is planned
    on every host at its own URI, concurrently (docs/CLUSTER.md).
    """
    from kvmnet.service.ops import load_spec, needs_libvirt, plan_spec

    spec, pos, warnings = load_spec(file)
    if spec.hosts or host_:  # many hosts, each at its own URI (kvmnet.service.multihost)
        from kvmnet.cli.multihost import plan_hosts

        raise typer.Exit(plan_hosts(
            file, spec, pos, warnings, connect_=connect_, netns=netns, only=host_,
            as_json=as_json, detailed_exitcode=detailed_exitcode, adopt=adopt, scope=scope))
    with connect(connect_, needs_libvirt(spec)) as conn:
        p = plan_spec(spec, pos, str(file), conn, frozenset(adopt or ()), netns, warnings,
                      tuple(scope or ()), root)
    if as_json:
        from kvmnet.service.views import plan_data

        out.json(plan_data(p.plan, conn.uri, str(file), p.warnings))
    else:
        print_problems(p.warnings)
        show_plan(p.plan, conn.uri, unread_note(spec, conn, file))
    if not allow_destroy and any(a.needs_allow_destroy and not a.skipped
                                 for a in p.plan.actions):
        raise typer.Exit(3)
    if detailed_exitcode and p.plan.changes:
        raise typer.Exit(2)


def unread_note(spec: Spec, conn: Connection, file: Path) -> str | None:
    """A plan with no changes says what it compared: for a spec with no networks and no
    guests libvirt is not read at all, so "matches the spec" would claim too much."""
    from kvmnet.service.ops import needs_libvirt

    if needs_libvirt(spec):
        return None
    host = ("" if not spec.host.bridges else
            "; its host bridges were not compared (test:/// has no host)" if conn.is_test else
            "; its host bridges match the host")
    return (f"No changes: {file} has no networks or guests, so libvirt at {conn.uri} was not "
            f"read and nothing there was compared{host}. (To remove what this spec's owner "
            f"holds in libvirt: kvmnet destroy {file})")


def _progress(i: int, total: int, a: Action, res: Any) -> None:
    if res is None:
        return
    extra = f" ({res.message})" if res.message else ""
    err.print(styled(f"[{i}/{total}] {a.kind} {a.target} ... ", MARK[res.status],
                     f" {res.seconds:.2f}s{extra}"))


def do_apply(file: Path, conn: Connection, yes: bool, allow_destroy: bool, as_json: bool,
             adopt: frozenset[str], netns: str | None, lock_wait: float,
             scope: tuple[str, ...] = (), host: Any = None,
             loaded: tuple[Spec, Positions, list[Problem]] | None = None,
             nothing: str | None = None) -> bool:
    """`host` (kvmnet.apply.bridge.options.HostOptions): --root and --confirm-timeout. `loaded`:
    what ops.load_spec(file) returned, when the caller has it (the file is read once).
    `nothing`: what an empty plan says (default: unread_note, or "matches the spec")."""
    from kvmnet.service.ops import load_spec, plan_spec

    def body() -> bool:
        spec, pos, warnings = loaded or load_spec(file)
        p = plan_spec(spec, pos, str(file), conn, adopt, netns, warnings, scope,
                      host.root if host else None)
        if not as_json:
            print_problems(p.warnings)
            show_plan(p.plan, conn.uri, nothing or unread_note(spec, conn, file))
        if not p.plan.changes:
            if as_json:
                out.json({"kvmnet": 1, "uri": conn.uri, "ok": True, "writes": 0,
                          "results": [], "warnings": [w.as_dict() for w in p.warnings]})
            return True
        from kvmnet.apply.runner import check_allowed, run  # (not loaded by a no-op)

        check_allowed(p.plan, allow_destroy)
        if not yes:
            if not sys.stdin.isatty():
                raise KvmnetError("not applying: stdin is not a terminal; pass --yes to apply "
                                  "without asking")
            if not typer.confirm("Apply these changes?", default=False):
                raise typer.Abort()
        report = run(p.plan, conn, p.live, allow_destroy,
                     None if as_json else _progress, netns, host)
        if as_json:
            out.json({"kvmnet": 1, "uri": conn.uri, "ok": report.ok, "writes": report.writes,
                      "results": [r.as_dict() for r in report.results],
                      "warnings": [w.as_dict() for w in p.warnings]})
        elif report.ok:
            done = sum(1 for r in report.results if r.status == "done")
            out.print(f"Applied {done} change(s) with {report.writes} libvirt write call(s).")
        else:
            failed = next(r for r in report.results if r.status == "failed")
            err.print(f"kvmnet: error: {failed.action.kind} {failed.action.target} failed: "
                      f"{failed.message}\nWhat ran before stays done; fix the cause and run "
                      "apply again to finish.")
        return report.ok

    if conn.is_test:
        return body()
    from kvmnet.backend.lock import apply_lock

    with apply_lock(conn.uri, lock_wait, err.print):
        return body()


@app.command()
def apply(
    file: SpecFile,
    connect_: ConnectOpt = None,
    yes: YesOpt = False,
    allow_destroy: AllowDestroyOpt = False,
    as_json: JsonOpt = False,
    adopt: AdoptOpt = None,
    netns: NetnsOpt = None,
    lock_wait: LockWaitOpt = 60.0,
    scope: ScopeOpt = None,
    confirm_timeout: Annotated[float, typer.Option(
        "--confirm-timeout", metavar="SECONDS", min=0,
        help="When host interfaces change: roll them back unless `kvmnet confirm` comes "
             "within this time (0: keep them once the self-check passes).")] = 120.0,
    root: Annotated[Path, typer.Option(
        "--root", metavar="DIR", help="Read and write host config files (and the rollback "
                                      "journal) under DIR instead of /.")] = Path("/"),
    check_within: Annotated[float | None, typer.Option(
        "--check-within", metavar="SECONDS", min=0.1,
        help="When host interfaces change: how long the self-check waits for the gateway "
             "(or check:) to answer before it rolls back; default 5 s, plus twice the "
             "forward delay with STP.")] = None,
    host_: HostOpt = None,
    parallel: ParallelOpt = PARALLEL,
) -> None:
    """Make the host match FILE: shows the plan, asks, then applies it with progress.

    DHCP reservations and DNS hosts change live (no network restart); other
    network changes redefine and restart the network and reconnect running
    guests. Only networks kvmnet owns are changed or removed. A host bridge
    change checks itself and is rolled back unless confirmed (kvmnet confirm).
    A spec with hosts: is applied on every host concurrently (docs/CLUSTER.md).
    """
    from kvmnet.apply.bridge.options import HostOptions
    from kvmnet.service.ops import load_spec, needs_libvirt

    spec, pos, warnings = load_spec(file)
    if spec.hosts or host_:  # many hosts, each at its own URI (kvmnet.service.multihost)
        from kvmnet.cli.multihost import apply_hosts

        raise typer.Exit(apply_hosts(
            file, spec, pos, warnings, connect_=connect_, netns=netns, only=host_,
            as_json=as_json, yes=yes, allow_destroy=allow_destroy, adopt=adopt, scope=scope,
            lock_wait=lock_wait, host=HostOptions(root, confirm_timeout, check_within,
                                                parallel=parallel)))
    with connect(connect_, needs_libvirt(spec)) as conn:
        ok = do_apply(file, conn, yes, allow_destroy, as_json, frozenset(adopt or ()), netns,
                      lock_wait, tuple(scope or ()),
                      HostOptions(root, confirm_timeout, check_within, parallel=parallel),
                      (spec, pos, warnings))
    if not ok:
        raise typer.Exit(1)


@app.command("import")
def import_(
    networks: Annotated[list[str] | None, typer.Argument(
        metavar="[NETWORK]...", help="Networks to import (default: all).",
        autocompletion=complete.networks)] = None,
    connect_: ConnectOpt = None,
    netns: NetnsOpt = None,
    ovn_nb: Annotated[str | None, typer.Option(
        "--ovn-nb", metavar="REMOTE", help="Also import kvmnet's overlay networks from this "
                                           "OVN northbound database (unix:PATH, tcp:HOST:PORT)."
    )] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a kvmnet spec (YAML) of what is live: networks, DHCP reservations, guests'
    NICs. `kvmnet plan` of it against the same host shows no changes.

    With --json: {"kvmnet": 1, "uri", "spec": the same spec as JSON data, "notes": what
    was left out and why}.
    """
    from kvmnet.model.spec import Ovn
    from kvmnet.service.ops import import_spec, read_live, with_nb
    from kvmnet.spec.dump import dump, to_data

    ovn = Ovn(northbound=ovn_nb) if ovn_nb else None
    with connect(connect_) as conn:
        live = read_live(conn, netns)
    if ovn is not None:  # kvmnet.ovn
        live = with_nb(live, ovn)
    spec, notes = import_spec(live, networks or None, ovn)
    if as_json:
        out.json({"kvmnet": 1, "uri": live.uri, "spec": to_data(spec), "notes": list(notes)})
        return
    for n in notes:
        err.print(styled(f"note: {n}"))
    out.print(dump(spec, f"# kvmnet spec imported from {live.uri}\n"), end="")


@app.command()
def demo(file: SpecFile, connect_: ConnectOpt = "test:///default") -> None:
    """validate, plan, apply --yes, show and plan again, on one connection.

    Made for libvirt's test:///default driver, whose state lives only as long
    as one connection: nothing on this host changes.
    """
    from kvmnet.service.ops import plan_file

    with connect(connect_) as conn:
        if not conn.is_test:
            raise KvmnetError("demo runs only against a test:/// URI; use plan/apply for "
                              "real hosts")
        out.print("", styled((f"$ kvmnet validate {file}", "bold")))
        from kvmnet.cli.local import validate

        validate(file)
        out.print("", styled((f"$ kvmnet plan {file} -c {conn.uri}", "bold")))
        p = plan_file(file, conn, frozenset())
        print_problems(p.warnings)
        show_plan(p.plan, conn.uri)
        out.print("", styled((f"$ kvmnet apply {file} -c {conn.uri} --yes", "bold")))
        do_apply(file, conn, True, False, False, frozenset(), None, 0)
        out.print("", styled((f"$ kvmnet show -c {conn.uri}", "bold")))
        from kvmnet.cli.show import all_leases, show_tables
        from kvmnet.service.ops import read_live
        from kvmnet.service.views import show_data

        live = read_live(conn)
        show_tables(show_data(live, all_leases(conn, live)))
        out.print("", styled((f"$ kvmnet plan {file} -c {conn.uri}   # again: nothing left to do",
                          "bold")))
        p = plan_file(file, conn, frozenset())
        show_plan(p.plan, conn.uri)


"""`kvmnet destroy FILE`: remove everything the spec's owner holds, through apply's plan,
confirmation and --allow-destroy rules."""

from __future__ import annotations

from pathlib import Path

import typer

from kvmnet.cli.common import ConnectOpt, JsonOpt, SpecFile, commands, connect
from kvmnet.cli.live import (
    AdoptOpt,
    AllowDestroyOpt,
    HostOpt,
    LockWaitOpt,
    NetnsOpt,
    RootOpt,
    ScopeOpt,
    YesOpt,
    do_apply,
)
from kvmnet.cli.output import err

app = commands()


@app.command()
def destroy(
    file: SpecFile,
    connect_: ConnectOpt = None,
    yes: YesOpt = False,
    allow_destroy: AllowDestroyOpt = False,
    as_json: JsonOpt = False,
    adopt: AdoptOpt = None,
    netns: NetnsOpt = None,
    lock_wait: LockWaitOpt = 60.0,
    scope: ScopeOpt = None,
    root: RootOpt = Path("/"),
    host_: HostOpt = None,
) -> None:
    """Remove everything FILE's owner holds on the host: its networks, the NICs it
    attached to guests and its port forwards (as apply of FILE with every network and
    guest left out would).

    Shows the plan and asks, as apply does; a network with guests attached needs
    --allow-destroy. Other owners' objects are left alone, and so are host bridges
    (kvmnet does not take a host's uplink apart: remove them from the host's network
    config) and guests themselves. Without --yes on a pipe it shows the plan and
    changes nothing.
    """
    from kvmnet.apply.bridge.options import HostOptions
    from kvmnet.service.ops import load_spec, teardown

    spec, pos, warnings = load_spec(file)
    gone = teardown(spec)
    if not as_json and spec.host.bridges:
        err.print(f"note: host bridges {', '.join(spec.host.bridges)} stay: destroy removes "
                  "only what kvmnet made in libvirt and the firewall")
    if spec.hosts or host_:
        from kvmnet.cli.multihost import apply_hosts

        raise typer.Exit(apply_hosts(
            file, gone, pos, warnings, connect_=connect_, netns=netns, only=host_,
            as_json=as_json, yes=yes, allow_destroy=allow_destroy, adopt=adopt, scope=scope,
            lock_wait=lock_wait, host=HostOptions(root, 0)))
    with connect(connect_) as conn:
        ok = do_apply(file, conn, yes, allow_destroy, as_json, frozenset(adopt or ()), netns,
                      lock_wait, tuple(scope or ()), HostOptions(root, 0),
                      (gone, pos, warnings),
                      nothing=f"Nothing to destroy: {spec.owner} holds nothing on {conn.uri}")
    if not ok:
        raise typer.Exit(1)

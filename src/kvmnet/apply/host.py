"""apply for host.bridge (a transaction of its own: journal, watchdog, confirm), and
for host.names and host.resolved (host.resolve_guests)."""

from __future__ import annotations

from kvmnet.apply.step import Step
from kvmnet.plan import Action


def bridge(a: Action, step: Step) -> str:
    from kvmnet.apply.bridge.transaction import apply_bridge

    return apply_bridge(a, step.netns, step.host)


def names(a: Action, step: Step) -> str:
    """/etc/nsswitch.conf (under --root) through the safe path, with a backup."""
    from kvmnet.backend.names import NSSWITCH, write_nsswitch

    saved = write_nsswitch(step.host.root, a.text)
    where = step.host.root / NSSWITCH
    return f"wrote {where}" + (f" (what it held: {saved})" if saved else "")


def resolved(a: Action, step: Step) -> str:
    """resolved's DNS for the bridge, and the hook that sets it again at every start."""
    from kvmnet.backend.names_hook import install
    from kvmnet.backend.resolved import set_link

    bridge = a.target.rsplit("/", 1)[-1]
    assert a.link is not None
    set_link(bridge, a.link)
    hook = install(step.host.root)
    return (f"systemd-resolved: {bridge} asks {', '.join(a.link.servers)}"
            + (f"; {hook}" if hook else ""))

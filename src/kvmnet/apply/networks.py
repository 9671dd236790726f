"""apply for libvirt networks: create, adopt, redefine, update live, start, autostart,
remove. Each makes the fewest write calls that do its job."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from kvmnet.apply.step import Step
from kvmnet.errors import LiveError
from kvmnet.plan import Action


def _name(a: Action) -> str:
    return a.target.partition("/")[2]


def _start(step: Step, name: str) -> None:
    """Start a defined network; when libvirt cannot (dnsmasq failed, a bridge or an
    address is taken), say in what state that leaves it."""
    try:
        step.backend.start_network(name)
    except LiveError as e:
        raise LiveError(f"{e} (network {name} is defined but not running: fix the cause "
                        "and apply again to start it)") from None


def create(a: Action, step: Step) -> str:
    name = _name(a)
    with step.turn(a):
        step.backend.define_network(name, a.xml)
        step.defined.add(name)
    _start(step, name)
    if a.autostart:
        step.backend.set_network_autostart(name, True)
    return ""


def undo_create(name: str, step: Step) -> str:
    """Stop and undefine a network this apply has just created (kvmnet.apply.together:
    one that ran beside a create that failed before it in plan order). '' when done,
    else what went wrong."""
    try:
        active = step.backend.network_active(name)
        if active:
            step.backend.stop_network(name)
        if active is not None:
            step.backend.undefine_network(name)
    except LiveError as e:
        return f"{name}: {e}"
    step.defined.discard(name)
    return ""


def _define(a: Action, step: Step, verb: str) -> str:
    name = _name(a)
    if not a.restart:
        step.backend.define_network(name, a.xml, verb)
        return ""
    # stop, define, start: defining while stopped makes the new config the running one
    # on every driver
    step.backend.stop_network(name)
    step.backend.define_network(name, a.xml, verb)
    with _replug(step, name):
        _start(step, name)
    return _reconnect(step, name)


def adopt(a: Action, step: Step) -> str:
    return _define(a, step, "mark")


def redefine(a: Action, step: Step) -> str:
    return _define(a, step, "redefine")


def update(a: Action, step: Step) -> str:
    name = _name(a)
    for u in a.updates:
        step.backend.update_network(name, u.command, u.section, u.parent_index, u.xml, a.live)
    if a.xml:  # kvmnet's record of what it applied (plan.fields), into the definition
        step.backend.define_network(name, a.xml, "record")
    return f"{len(a.updates)} live update(s)"


def start(a: Action, step: Step) -> str:
    _start(step, _name(a))
    return ""


def autostart(a: Action, step: Step) -> str:
    step.backend.set_network_autostart(_name(a), bool(a.autostart))
    return ""


def remove(a: Action, step: Step) -> str:
    name = _name(a)
    active = step.backend.network_active(name)
    if active is None:  # what the spec wants; another apply or a person did it
        return "already gone"
    if a.restart and active:
        step.backend.stop_network(name)
    step.backend.undefine_network(name)
    return ""


def _taps(step: Step, name: str) -> list[tuple[str, str]]:
    """(domain, tap) of every running guest's NIC on the network."""
    return [(d.name, n.target) for d in step.live.domains.values() for n in d.live_nics
            if n.type == "network" and n.source == name and n.target]


def _replug(step: Step, name: str) -> AbstractContextManager[object]:
    """While the network starts: its running guests' taps into its new bridge as soon as
    the bridge exists (backend.replug), not only after libvirt's start returned."""
    taps = [t for _d, t in _taps(step, name)]
    if step.backend.is_test or not taps:
        return nullcontext()
    try:
        bridge, mtu = step.backend.network_bridge(name)
    except LiveError:  # (the reconnect after start asks again, and reports)
        return nullcontext()
    from kvmnet.backend.replug import Replug

    return Replug(bridge, taps, step.netns, mtu)


def _reconnect(step: Step, name: str) -> str:
    """Put running guests' taps back into the network's new bridge (libvirt does not)."""
    if step.backend.is_test:
        return ""
    taps = _taps(step, name)
    bridge, mtu = step.backend.network_bridge(name)
    from kvmnet.backend.host import set_master

    for _dom, tap in taps:
        set_master(tap, bridge, step.netns, mtu)
    if not taps:
        return ""
    done = f"reconnected {', '.join(f'{d}:{t}' for d, t in taps)}"
    from kvmnet.backend.announce import announce

    try:  # the guests' entry for their gateway: the new bridge's MAC (backend.announce)
        announce(bridge, step.netns)
    except (OSError, LiveError) as e:
        why = getattr(e, "strerror", None) or e
        return (f"{done}; no gratuitous ARP from {bridge} ({why}): if the bridge's MAC "
                "changed, a guest finds its gateway again only when its entry goes stale "
                "(tens of seconds)")
    return done

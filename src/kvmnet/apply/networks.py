"""apply for libvirt networks: create, adopt, redefine, update live, start, autostart,
remove. Each makes the fewest write calls that do its job."""

from __future__ import annotations

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
    step.backend.define_network(name, a.xml)
    _start(step, name)
    if a.autostart:
        step.backend.set_network_autostart(name, True)
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


def _reconnect(step: Step, name: str) -> str:
    """Put running guests' taps back into the network's new bridge (libvirt does not)."""
    if step.backend.is_test:
        return ""
    taps = [(d.name, n.target) for d in step.live.domains.values() for n in d.live_nics
            if n.type == "network" and n.source == name and n.target]
    bridge, mtu = step.backend.network_bridge(name)
    from kvmnet.backend.host import set_master

    for _dom, tap in taps:
        set_master(tap, bridge, step.netns, mtu)
    return f"reconnected {', '.join(f'{d}:{t}' for d, t in taps)}" if taps else ""

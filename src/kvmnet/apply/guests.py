"""apply for guest NICs: attach, change, detach, and kvmnet's record of the NICs it
attached (the domain's metadata)."""

from __future__ import annotations

from kvmnet.apply.step import Step
from kvmnet.backend.base import NicOp
from kvmnet.errors import LiveError
from kvmnet.parse.domain import nic_records_xml
from kvmnet.plan import Action


def _record(a: Action, step: Step, domain: str) -> None:
    """Write kvmnet's record of the NICs it attached (MAC, owner, index) into the
    domain's metadata."""
    if a.nic_records is not None:
        step.backend.set_managed_macs(domain, nic_records_xml(a.nic_records))


def _nic(a: Action, step: Step, op: NicOp) -> str:
    if a.domain is None or a.mac is None:
        raise LiveError(f"{a.kind} {a.target}: the action names no domain or MAC")
    if op == "attach":
        # Record the NIC as kvmnet's before it exists: a crash in between leaves a record
        # of a NIC that is not there (the next apply attaches it), never a NIC kvmnet
        # does not know it attached (it could not detach it ever again).
        _record(a, step, a.domain)
    if a.set_vlans and a.live and op != "detach":
        return _nic_on_vlans(a, step, op)
    note = step.backend.change_nic(a.domain, op, a.mac, a.xml, a.live)
    if op != "attach":  # (a detach is recorded once the NIC is gone)
        _record(a, step, a.domain)
    return note


def _nic_on_vlans(a: Action, step: Step, op: NicOp) -> str:
    """A NIC of a running guest whose tap kvmnet puts on its VLANs (libvirt 9): libvirt
    plugs the tap into the bridge on the bridge's default VLAN, so the NIC comes (or
    stays) with its link down until the tap is on its own VLANs, then goes up: no frame
    of the guest's ever reaches a VLAN that is not its own. A stop in between leaves the
    link down (plan shows it and the next apply brings it up), never a leak."""
    from kvmnet.render.interface import link_down

    assert a.domain is not None and a.mac is not None
    notes = [step.backend.change_nic(a.domain, op, a.mac, link_down(a.xml), True)]
    if op != "attach":
        _record(a, step, a.domain)
    notes.append(vlans(a, step))
    notes.append(step.backend.change_nic(a.domain, "update", a.mac, a.xml, True))
    return "; ".join(n for n in notes if n)


def vlans(a: Action, step: Step) -> str:
    """nic.vlans (and after a NIC of a running guest was attached or changed): its tap's
    VLANs, set by kvmnet (kvmnet.backend.vlans)."""
    from kvmnet.backend.vlans import set_port

    if a.domain is None or a.mac is None:
        raise LiveError(f"{a.kind} {a.target}: the action names no domain or MAC")
    tap = step.backend.nic_tap(a.domain, a.mac)
    if tap is None:
        raise LiveError(f"NIC {a.mac} of {a.domain} has no tap: cannot set its VLANs")
    return set_port(tap, a.vlans, step.netns)


def vlan_hook(a: Action, step: Step) -> str:
    """host.vlans: write or remove kvmnet's libvirt qemu hook."""
    from kvmnet.backend import vlan_hook as hook

    return (hook.install if a.text == "install" else hook.remove)(step.host.root)


def attach(a: Action, step: Step) -> str:
    return _nic(a, step, "attach")


def update(a: Action, step: Step) -> str:
    return _nic(a, step, "update")


def detach(a: Action, step: Step) -> str:
    return _nic(a, step, "detach")


def adopt(a: Action, step: Step) -> str:
    """Only the record changes: the NIC is this owner's from now on."""
    if a.domain is None:
        raise LiveError(f"{a.kind} {a.target}: the action names no domain")
    _record(a, step, a.domain)
    return ""

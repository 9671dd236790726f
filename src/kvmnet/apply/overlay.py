"""apply for ovn.*: each action is one OVN northbound transaction, counted as a write
of the backend (kvmnet.backend.ovsdb)."""

from __future__ import annotations

from kvmnet.apply.step import Step
from kvmnet.errors import LiveError
from kvmnet.plan import Action


def change(a: Action, step: Step) -> str:
    if a.ovn is None:
        raise LiveError(f"{a.kind} {a.target}: the action holds no northbound change")
    return step.nb().apply(a.ovn, step.backend.write)

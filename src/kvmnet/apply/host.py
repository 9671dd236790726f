"""apply for host.bridge: a transaction of its own (journal, watchdog, confirm)."""

from __future__ import annotations

from kvmnet.apply.step import Step
from kvmnet.plan import Action


def bridge(a: Action, step: Step) -> str:
    from kvmnet.apply.bridge.transaction import apply_bridge

    return apply_bridge(a, step.netns, step.host)

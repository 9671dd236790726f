"""apply for firewall.sync: kvmnet's port forward rules, state file and libvirt hook
(kvmnet.backend.firewall), in one nft transaction."""

from __future__ import annotations

from kvmnet.apply.step import Step
from kvmnet.plan import Action


def sync(a: Action, step: Step) -> str:
    from kvmnet.backend.firewall import sync as firewall_sync

    return firewall_sync(a.forwards, step.netns, step.host.root)

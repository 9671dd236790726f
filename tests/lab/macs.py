"""The MACs plan gives a spec's NICs (those without `mac:` and without a NIC live yet):
salted with the spec's owner (its file's path when it says none) and the host the URI
reaches (kvmnet.model.derive.mac_key). Tests that look for a generated MAC on a guest
or in a reservation ask here, not nic_macs(spec) alone."""

from __future__ import annotations

from pathlib import Path

from kvmnet.model.derive import NicMacs, nic_macs
from kvmnet.model.spec import Spec
from kvmnet.model.uri import mac_host
from kvmnet.spec.owner import default_owner


def planned_macs(spec: Spec, uri: str, path: Path | None = None,
                 owner: str | None = None) -> NicMacs:
    """`owner` stands in for a spec without one (else its file `path`'s default)."""
    if spec.owner is None and (owner or path):
        spec = spec.model_copy(update={"owner": owner or default_owner(path or Path())})
    return nic_macs(spec, host=mac_host(uri))

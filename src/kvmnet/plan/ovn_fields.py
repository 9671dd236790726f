"""The names a plan gives the OVN northbound columns and keys kvmnet writes (plan.
overlay_nb), as plan.fields does for libvirt networks: `~ addresses DHCP leaves out
10.240.1.1..10.240.1.99 -> ...`, `+ DHCP lease 1h`, not `options:lease_time: 3600`.
tests/unit/test_plan_fields.py renders overlay networks and fails for a column or key
without a label here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kvmnet.model.overlay import GUEST_KEY, NETWORK_KEY, NIC_KEY, OWNER_KEY, ROLE_KEY
from kvmnet.plan.fieldfmt import plain
from kvmnet.plan.fields import FieldChange, Leaf


def _lease_s(v: Any) -> str:
    """OVN's lease_time, in seconds: 3600 -> 1h (as a spec writes it)."""
    try:
        s = int(v)
    except (TypeError, ValueError):
        return plain(v)
    for unit, n in (("h", 3600), ("m", 60)):
        if s and s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s" if s else "infinite"


OVN_FIELDS: dict[str, Leaf] = {
    "cidr": Leaf("subnet"),
    "other_config:subnet": Leaf("subnet"),
    "other_config:exclude_ips": Leaf("addresses DHCP leaves out"),
    "options:server_id": Leaf("DHCP server"),
    "options:server_mac": Leaf("DHCP server MAC"),
    "options:lease_time": Leaf("DHCP lease", _lease_s),
    "options:router": Leaf("gateway"),
    "options:mtu": Leaf("MTU"),
    "options:domain_name": Leaf("DNS domain"),
    "options:router-port": Leaf("router port"),
    "options:network_name": Leaf("physical network"),
    "addresses": Leaf("addresses"),
    "port_security": Leaf("port security"),
    "dhcpv4_options": Leaf("DHCP options"),
    "type": Leaf("port type"),
    f"external_ids:{OWNER_KEY}": Leaf("kvmnet's mark"),
    f"external_ids:{NETWORK_KEY}": Leaf("kvmnet's network"),
    f"external_ids:{GUEST_KEY}": Leaf("kvmnet's guest"),
    f"external_ids:{NIC_KEY}": Leaf("kvmnet's NIC index"),
    f"external_ids:{ROLE_KEY}": Leaf("kvmnet's role"),
}


def ovn_change(field: str, old: Any, new: Any) -> FieldChange:
    """One OVN column (or COLUMN:KEY) that differs, by its label (the column's name
    when it has none: test_plan_fields keeps that from happening)."""
    entry = OVN_FIELDS.get(field)
    label, fmt = (entry.label, entry.fmt) if entry else (field, plain)
    return FieldChange(field, field, label, old, new, fmt, field)


def map_changes(column: str, old: Mapping[str, str], new: Mapping[str, str]
                ) -> list[FieldChange]:
    """COLUMN:KEY changes of a map column (options, other_config, external_ids)."""
    return [ovn_change(f"{column}:{k}", old.get(k), new.get(k))
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]

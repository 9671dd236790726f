"""What kvmnet applied, and drift: a value changed outside kvmnet.

Each network kvmnet defines carries, on its mark (`<kvmnet:managed owner="..."
applied="1 TOKEN...">`), a record of what it defined: a short hash (48 bits) of each
unit of it, a unit being a field outside a list (unset ones too) or one item of a list
as a whole (a DHCP reservation, a DNS host, an address block). A create, redefine and
adopt write it with the network; a live update (DHCP reservations, DNS hosts, TXT and
SRV records) writes it after its virNetworkUpdate calls, by defining the network's
persistent config again (no restart: libvirt keeps the running config), so the record
is never behind what kvmnet did.

The next plan tells each field that differs from the spec: the live value is not what
kvmnet last applied -> "changed outside kvmnet" (and, when the spec no longer says what
kvmnet applied either, "and in the spec"); else the change is the spec's. A network
defined by a kvmnet before records, or not by kvmnet, has none: its plan labels nothing.
Guest NICs carry no record (their fields are few and each is shown old -> new).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from kvmnet.model.spec import Network
from kvmnet.plan.fields import FIELDS, FieldChange, Items, Leaf, Sub, empty, keyed

RECORD_FORMAT = "1"


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode   # (model_dump's order: stable)


def _token(unit: str, value: Any) -> str:
    data = f"{unit}\0{_ENCODE(value)}" if value is not None else unit
    return base64.urlsafe_b64encode(hashlib.blake2b(data.encode(), digest_size=6).digest()
                                    ).decode()


def units(net: Network) -> Iterator[tuple[str, Any]]:
    """(unit, value) for every unit of a network kvmnet records at a define: each field
    outside a list (with None when unset), and each item of a list as a whole."""
    data = net.model_dump(mode="json", exclude={"xml_extra"})

    def walk(cls: type[BaseModel], d: Mapping[str, Any], path: str
             ) -> Iterator[tuple[str, Any]]:
        for name, entry in FIELDS[cls].items():
            p = f"{path}.{name}" if path else name
            v = d.get(name)
            if isinstance(entry, Leaf):
                yield p, None if empty(v) else v
            elif isinstance(entry, Sub):
                yield from walk(entry.model, v or {}, p)
            elif isinstance(entry, Items):
                for k, x in keyed(entry, v).items():
                    yield f"{p}[{k}]", x

    yield from walk(Network, data, "")


def record(net: Network) -> str:
    """kvmnet's record of a network as it defines it: a short hash of each unit, so the
    next plan can tell a value kvmnet applied from one changed since (by hand, or another
    tool), without keeping a copy of the values."""
    return RECORD_FORMAT + " " + " ".join(sorted(_token(u, v) for u, v in units(net)))


def mark_drift(changes: list[FieldChange], live: Network, wanted: Network, rec: str | None
               ) -> list[FieldChange]:
    """Each change whose live value is not what kvmnet last applied (its record),
    labelled "changed outside kvmnet"; no record (a network defined before records, or
    not by kvmnet): no labels, nothing can tell."""
    if not rec or rec.split(" ", 1)[0] != RECORD_FORMAT:
        return changes
    have = set(rec.split()[1:])
    lv, wv = dict(units(live)), dict(units(wanted))
    out = []
    for c in changes:
        u = c.unit
        scalar = "[" not in u
        if u in lv or scalar:
            outside = _token(u, lv.get(u)) not in have
        else:   # an item live no longer has: gone outside kvmnet if kvmnet applied it
            outside = u in wv and _token(u, wv[u]) in have
        if outside:
            spec_too = (u in wv or scalar) and _token(u, wv.get(u)) not in have
            why = "changed outside kvmnet" + (", and in the spec" if spec_too else "")
            c = FieldChange(c.path, c.field, c.label, c.old, c.new, c.fmt, c.unit, why)
        out.append(c)
    return out

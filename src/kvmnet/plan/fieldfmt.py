"""How plan.fields writes a value: JSON data (model_dump(mode="json")) -> text with its
unit (a lease as 12h, a delay in s, DHCP pools as START-END)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Fmt = Callable[[Any], str]


def plain(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, list):
        return ", ".join(plain(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return " ".join(f"{k}={plain(x)}" for k, x in v.items())
    return str(v)


def lease(v: Any) -> str:
    """{"expiry": 12, "unit": "hours"} -> 12h; 0 -> infinite."""
    if not isinstance(v, dict):
        return plain(v)
    if not v.get("expiry"):
        return "infinite"
    return f"{v['expiry']}{str(v.get('unit', 'minutes'))[0]}"


def seconds(v: Any) -> str:
    return f"{v} s"


def ranges(v: Any) -> str:
    """DHCP pools: 10.0.0.100-10.0.0.199 (lease 1h), ... (every address whole: a plan
    shows each one libvirt gets)."""
    out = []
    for r in v or ():
        text = f"{r['start']}-{r['end']}"
        if r.get("lease_time"):
            text += f" (lease {lease(r['lease_time'])})"
        out.append(text)
    return ", ".join(out) or "none"


def forwarders(v: Any) -> str:
    out = []
    for f in v or ():
        addr = f.get("addr")
        text = (f"{f['domain']} via {addr}" if f.get("domain") and addr else
                f"{f['domain']} (local only)" if f.get("domain") and
                (f.get("local_only") or addr == "none") else
                f.get("domain") or str(addr))
        out.append(text)
    return ", ".join(out) or "none"


def quoted(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, str) else plain(v)

"""Spec -> YAML text, in the same shorthand a person writes (ranges as
START-END, lease times as 1h, single ports as numbers)."""

from __future__ import annotations

from typing import Any

import yaml

from kvmnet.model.spec import Spec


def to_data(spec: Spec) -> dict[str, Any]:
    data = spec.model_dump(mode="json", exclude_defaults=True)
    for name, net in data.get("networks", {}).items():  # always say the mode
        data["networks"][name] = {"mode": spec.networks[name].mode, **net}
    return _short(data, "")  # type: ignore[no-any-return]


def _short(v: Any, key: str) -> Any:
    if isinstance(v, dict):
        if key == "lease_time" or set(v) <= {"expiry", "unit"} and "expiry" in v:
            exp = v.get("expiry", 0)
            return "infinite" if exp == 0 else f"{exp}{v.get('unit', 'minutes')[0]}"
        if set(v) == {"start", "end"}:
            return f"{v['start']}-{v['end']}"
        return {k: _short(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [_short(x, key) for x in v]
    if key in ("host_port", "guest_port") and isinstance(v, str) and v.isdigit():
        return int(v)
    return v


def dump(spec: Spec, header: str = "") -> str:
    text = yaml.safe_dump(to_data(spec), sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=100)
    return header + text

"""The spec's models (pydantic): frozen values, strict for YAML, lax for libvirt's XML,
every error at once with its place, and the dump and copy the rest of kvmnet uses.
(Moved here from the tests of spec/base.py, the home-made base they replaced.)"""

from __future__ import annotations

import ipaddress
import pickle
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kvmnet.model.spec import DhcpRange, Dns, GuestNic, Lease, Network, Spec
from kvmnet.model.types import PortRange
from kvmnet.spec.load import load

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed.yaml"


def _errors(model: Any, data: Any, strict: bool = True) -> list[tuple[Any, str]]:
    with pytest.raises(ValidationError) as e:
        model.model_validate(data, strict=strict)
    return [(err["loc"], err["type"]) for err in e.value.errors()]


def test_models_are_frozen_values() -> None:
    spec, _ = load(SEED)
    net = spec.networks["default"]
    with pytest.raises(ValidationError):
        net.mtu = 9000  # type: ignore[misc]
    assert net == Network.model_validate(net.model_dump())
    assert hash(Lease(expiry=1, unit="hours")) == hash(Lease.model_validate("1h"))
    assert pickle.loads(pickle.dumps(spec)) == spec
    # JSON mode writes what the YAML loader reads back (strict) to the same value
    assert Spec.model_validate(spec.model_dump(mode="json"), strict=True) == spec


def test_every_error_at_once_with_its_place() -> None:
    got = _errors(Spec, {
        "networks": {"a": {"mode": "nt", "stp": 1, "mtu": 20, "frob": 1,
                           "ipv4": {"dhcp": "10.0.0.2-10.0.0.9"}},
                     "b/c": {}},
        "guests": {"g": {"interfaces": [{"network": "a", "mac": "zz"}, 5]}},
    })
    assert sorted(got, key=str) == sorted([
        (("networks", "a", "mode"), "literal_error"),
        (("networks", "a", "stp"), "bool_type"),
        (("networks", "a", "mtu"), "greater_than_equal"),
        (("networks", "a", "frob"), "extra_forbidden"),
        (("networks", "a", "ipv4", "address"), "missing"),
        (("networks", "b/c", "[key]"), "value_error"),
        (("guests", "g", "interfaces", 0, "mac"), "value_error"),
        (("guests", "g", "interfaces", 1), "model_type"),
    ], key=str)


def test_strict_refuses_what_lax_reads() -> None:
    """The YAML loader is strict (YAML typed every value); libvirt's XML is text."""
    assert _errors(Network, {"mtu": "9000"}) == [(("mtu",), "int_type")]
    assert _errors(Network, {"mtu": True}) == [(("mtu",), "int_type")]
    assert _errors(Network, {"stp": "yes"}) == [(("stp",), "bool_type")]
    lax = Network.model_validate({"mtu": "9000", "stp": "yes", "domain_local": "no"})
    assert lax.mtu == 9000 and lax.stp is True and lax.domain_local is False
    assert _errors(Network, {"stp": "maybe"}, strict=False) == [(("stp",), "bool_parsing")]


def test_value_parsers_and_model_rules_are_value_errors() -> None:
    with pytest.raises(ValidationError) as e:
        GuestNic.model_validate({"network": "a", "bridge": "br0"})
    (err,) = e.value.errors()
    assert err["type"] == "value_error" and err["loc"] == ()
    assert "exactly one of network" in str(err["ctx"]["error"])
    with pytest.raises(ValidationError) as e:
        Network.model_validate({"mode": "nt"})
    assert e.value.errors()[0]["ctx"]["expected"].startswith("'nat', 'route'")


def test_dump_copy_construct() -> None:
    r = DhcpRange.model_validate("10.0.0.2-10.0.0.9")
    assert r.start == ipaddress.IPv4Address("10.0.0.2")
    assert r.model_dump() == {"start": r.start, "end": r.end, "lease_time": None}
    assert r.model_dump(mode="json") == {"start": "10.0.0.2", "end": "10.0.0.9",
                                         "lease_time": None}
    net = Network.model_validate({"mode": "route", "devices": ["eth0"],
                                  "forwards": [], "nat": {"ports": "1024-2048"}})
    assert net.model_dump(mode="json", exclude_defaults=True) == {
        "mode": "route", "devices": ["eth0"], "nat": {"ports": "1024-2048"}}
    assert net.model_dump()["nat"]["ports"] == PortRange(1024, 2048)
    assert "devices" not in net.model_dump(mode="json", exclude={"devices"})
    c = net.model_copy(update={"mode": "nat"})
    assert c.mode == "nat" and c.devices is net.devices and net.mode == "route"
    assert net.model_copy(deep=True).devices is not net.devices
    raw = Dns.model_construct(enable=False)
    assert raw.enable is False and raw.hosts == [] and raw.forward_plain_names is None

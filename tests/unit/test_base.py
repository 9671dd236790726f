"""spec.base: the small model base the spec is built on (replaced pydantic, issue 8)."""

from __future__ import annotations

import ipaddress
import pickle
from typing import Annotated, Any, Literal

import pytest

from kvmnet.spec.base import (
    AfterValidator,
    BeforeValidator,
    Field,
    Model,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

Addr = Annotated[ipaddress.IPv4Address, BeforeValidator(ipaddress.IPv4Address),
                 PlainSerializer(str)]


def _upper(v: str) -> str:
    if not v.isupper():
        raise ValueError(f"{v!r} is not upper case")
    return v


class Leaf(Model):
    n: int = Field(default=1, ge=0, le=10)
    tag: Annotated[str, AfterValidator(_upper)] = "A"


class Tree(Model):
    name: str
    kind: Literal["a", "b"] = "a"
    on: bool = True
    ip: Addr | None = None
    leaves: list[Leaf] = Field(default_factory=list)
    by: dict[str, Leaf] = Field(default_factory=dict)
    names: list[str] = Field(default_factory=list, min_length=0)

    @field_validator("names", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _b_has_leaves(self) -> Tree:
        if self.kind == "b" and not self.leaves:
            raise ValueError("kind b needs leaves")
        return self


def _errors(data: Any, strict: bool = True) -> list[tuple[Any, str]]:
    with pytest.raises(ValidationError) as e:
        Tree.model_validate(data, strict=strict)
    return [(err["loc"], err["type"]) for err in e.value.errors()]


def test_valid_data_builds_frozen_values() -> None:
    t = Tree.model_validate({"name": "x", "ip": "10.0.0.1", "leaves": [{"n": 3}],
                             "by": {"k": {}}, "names": "one"}, strict=True)
    assert t.ip == ipaddress.IPv4Address("10.0.0.1")
    assert t.leaves == [Leaf(n=3)] and t.by["k"] == Leaf() and t.names == ["one"]
    with pytest.raises(TypeError):
        t.name = "y"  # type: ignore[misc]
    assert Tree.model_validate("short").name == "short"   # model before-validator
    assert t == Tree.model_validate(t.model_dump(mode="json"), strict=True)
    assert pickle.loads(pickle.dumps(t)) == t


def test_every_error_at_once_with_its_place() -> None:
    got = _errors({"kind": "c", "on": 1, "leaves": [{"n": 11}, {"tag": "low"}, 5],
                   "by": {"k": {"x": 1}}, "extra": 2})
    assert sorted(got, key=str) == sorted([
        (("name",), "missing"), (("kind",), "literal_error"), (("on",), "bool_type"),
        (("leaves", 0, "n"), "less_than_equal"), (("leaves", 1, "tag"), "value_error"),
        (("leaves", 2), "model_type"), (("by", "k", "x"), "extra_forbidden"),
        (("extra",), "extra_forbidden")], key=str)


def test_strict_refuses_what_lax_reads() -> None:
    assert _errors({"name": "x", "leaves": [{"n": "3"}]}) == [(("leaves", 0, "n"), "int_type")]
    assert _errors({"name": "x", "leaves": [{"n": True}]}) == [(("leaves", 0, "n"), "int_type")]
    t = Tree.model_validate({"name": "x", "on": "no", "leaves": [{"n": "3"}]})
    assert t.on is False and t.leaves[0].n == 3
    assert _errors({"name": "x", "on": "maybe"}, strict=False) == [(("on",), "bool_parsing")]


def test_messages_name_the_rule() -> None:
    with pytest.raises(ValidationError) as e:
        Tree.model_validate({"name": "x", "kind": "b"})
    (err,) = e.value.errors()
    assert err["type"] == "value_error" and str(err["ctx"]["error"]) == "kind b needs leaves"
    with pytest.raises(ValidationError) as e:
        Tree.model_validate({"name": "x", "kind": "z"})
    assert e.value.errors()[0]["ctx"]["expected"] == "'a' or 'b'"


def test_dump_copy_construct() -> None:
    t = Tree(name="x", ip="10.0.0.2", leaves=[Leaf(n=2)])
    assert t.model_dump(mode="json", exclude_defaults=True) == {
        "name": "x", "ip": "10.0.0.2", "leaves": [{"n": 2}]}
    assert t.model_dump(mode="json", exclude={"leaves", "by"})["ip"] == "10.0.0.2"
    assert t.model_dump()["ip"] == ipaddress.IPv4Address("10.0.0.2")
    c = t.model_copy(update={"kind": "b"})
    assert c.kind == "b" and c.leaves is t.leaves and t.kind == "a"
    assert t.model_copy(deep=True).leaves is not t.leaves
    raw = Tree.model_construct(name="<x>")
    assert raw.name == "<x>" and raw.leaves == [] and raw.kind == "a"
    assert list(Tree.model_fields) == ["name", "kind", "on", "ip", "leaves", "by", "names"]
    assert hash(Leaf(n=2)) == hash(Leaf(n=2))

"""The spec models' base, and how their JSON Schema states the short forms the models read.

Some keys take a shorthand beside the full mapping (a DHCP range as START-END, a lease
time as 1h, one address instead of a list). The models read it in before-validators,
which pydantic's JSON Schema cannot see; these helpers say it in the schema, so that an
editor accepts exactly what the loader does (model.value_schema has the text forms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

JsonSchema = dict[str, Any]
_OBJECT_KEYS = ("type", "properties", "required", "additionalProperties")


class Model(BaseModel):
    """Every spec model: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def or_text(*forms: JsonSchema, also: JsonSchema | None = None
            ) -> Callable[[JsonSchema], None]:
    """A model's schema: one of `forms` (its shorthand) or the mapping of its fields
    (with the constraints `also`)."""
    def extra(schema: JsonSchema) -> None:
        mapping = {k: schema.pop(k) for k in _OBJECT_KEYS if k in schema}
        schema["anyOf"] = [*forms, {**mapping, **(also or {})}]
    return extra


def one_or_list(schema: JsonSchema) -> None:
    """A list field's schema that also takes a single item (the validator wraps it)."""
    listed = {k: schema.pop(k) for k in ("type", "items")}
    schema["anyOf"] = [listed["items"], listed]


def _set(key: str) -> JsonSchema:
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


def exactly_one(*keys: str) -> JsonSchema:
    """Schema keywords: exactly one of `keys` is given, and not null."""
    return {"oneOf": [_set(k) for k in keys]}


def at_least_one(*keys: str) -> JsonSchema:
    """Schema keywords: one of `keys` or more is given, and not null."""
    return {"anyOf": [_set(k) for k in keys]}

"""The spec's JSON Schema, draft-07, generated from the models: what editors read.

yaml-language-server (VS Code's YAML extension, and the editors that run it) reads
draft-07 and below; pydantic writes draft 2020-12. So the schema pydantic makes from
`Spec` is rewritten here: "$defs" become "definitions", "prefixItems" an "items" array,
a "$ref" with other keywords beside it an "allOf" (draft-07 ignores a $ref's siblings).
The value types' schemas (model.value_schema: addresses, ranges, MACs, ...) are named
once under "definitions" and referred to, instead of repeating their patterns at every
key. schema/kvmnet.schema.json is this output (`kvmnet schema`), checked by a test.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, NoDefault
from pydantic_core import core_schema

from kvmnet.model.spec import Spec
from kvmnet.model.value_schema import DEFINITIONS

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_REF = "#/definitions/{model}"
# Keywords that describe a value without constraining it: a value type's schema still
# matches at a key whose own description or examples replaced the type's.
_ANNOTATIONS = ("description", "examples", "default")
TITLE = "kvmnet spec"
DESCRIPTION = (
    "A kvmnet spec: host bridges, libvirt networks and guests' NICs, for one host or "
    "several (every key: docs/SPEC.md in kvmnet). This schema checks the keys and the form "
    "of every value; `kvmnet validate FILE` also checks what a schema cannot (overlapping "
    "subnets, a DHCP range outside its subnet, unknown network names, ...).")


class _Generator(GenerateJsonSchema):
    """pydantic's generator, with what editors show: no titles made from key names
    (they repeat the key), defaults of lists and mappings too, and a mapping's keys
    checked by their own schema."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):   # `host: {}`, not every default written out
            return value.model_dump(mode="json", exclude_defaults=True)
        return value if value is not None else NoDefault

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        # pydantic turns a key type's pattern into patternProperties, which let any
        # key that does not match through; propertyNames refuses it.
        out: JsonSchemaValue = {"type": "object"}
        keys = self.generate_inner(schema["keys_schema"]) if "keys_schema" in schema else {}
        values = (self.generate_inner(schema["values_schema"])
                  if "values_schema" in schema else {})
        out["additionalProperties"] = values or True
        if keys and keys != {"type": "string"}:
            out["propertyNames"] = keys
        return out


def json_schema() -> dict[str, Any]:
    """The spec's JSON Schema (draft-07), as a JSON-ready dict."""
    raw = Spec.model_json_schema(ref_template=_REF, schema_generator=_Generator)
    defs = {name: _hoist(d) for name, d in raw.pop("$defs", {}).items()}
    defs.update({name: _hoist(d, top=name) for name, d in DEFINITIONS.items()})
    root = _hoist(raw)
    root.pop("title", None)
    out = {**root, "$schema": DRAFT_07, "title": TITLE, "description": DESCRIPTION,
           "definitions": defs}
    return _draft07(out)  # type: ignore[no-any-return]


def schema_text() -> str:
    """The schema as `kvmnet schema` prints it and schema/kvmnet.schema.json holds it."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def _core(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in _ANNOTATIONS}


_CORES = {name: _core(s) for name, s in DEFINITIONS.items()}


def _hoist(node: Any, top: str | None = None) -> Any:
    """Replace each value type's schema in `node` by a $ref to its definition (keeping
    the description and examples the key gave it); `top` is the definition itself."""
    if isinstance(node, list):
        return [_hoist(x) for x in node]
    if not isinstance(node, dict):
        return node
    for name, core in _CORES.items():
        if name != top and all(k in node and node[k] == v for k, v in core.items()):
            own = DEFINITIONS[name]
            extra = {k: v for k, v in node.items()
                     if k not in core and not (k in own and own[k] == v)}
            return {"$ref": _REF.format(model=name), **extra}
    return {k: _hoist(v) for k, v in node.items()}


def _draft07(node: Any) -> Any:
    """2020-12 keywords pydantic writes -> their draft-07 forms."""
    if isinstance(node, list):
        return [_draft07(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _draft07(v) for k, v in node.items()}
    if "prefixItems" in node:
        rest = node.pop("items", None)
        node["items"] = node.pop("prefixItems")
        if rest is not None:
            node["additionalItems"] = rest
    if "$ref" in node and len(node) > 1:
        ref = node.pop("$ref")
        node["allOf"] = [{"$ref": ref}, *node.get("allOf", [])]
    if isinstance(node.get("description"), str):
        node["description"] = " ".join(node["description"].split())
    return node

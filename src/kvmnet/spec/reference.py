"""docs/SPEC.md: the spec's reference, every key with its type, default, meaning and an
example, written from the JSON Schema (spec.schema), itself made from the models.

So the reference, the editors' help and the loader cannot drift apart: a key's
description is its Field(description=...), its example the Field's or its value type's.
`kvmnet schema --markdown` prints it; a test keeps docs/SPEC.md equal to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from kvmnet.spec.schema import json_schema

Schema = dict[str, Any]
_NULL = {"type": "null"}

INTRO = """\
# The kvmnet spec

<!-- Generated from kvmnet's models by `kvmnet schema --markdown > docs/SPEC.md`:
     edit the models' descriptions (src/kvmnet/model), not this file. -->

A spec is one YAML file: the host's bridges, the libvirt networks and the guests' NICs
(`kvmnet validate FILE` checks it, `plan` and `apply` carry it out).
[examples/seed.yaml](../examples/seed.yaml) is a whole one. Every key is listed below
with its type, its default (what leaving it out means), what it does and an example;
a key not listed here is an error.

## In an editor

Editors that run yaml-language-server (VS Code with Red Hat's YAML extension, Neovim's
yamlls, Helix, ...) complete keys, show these descriptions on hover and mark mistakes as
you type when the file names kvmnet's JSON Schema on its first line, as the examples do:

    # yaml-language-server: $schema=../schema/kvmnet.schema.json

The path is relative to the YAML file (a URL works too); `kvmnet schema -o FILE` writes
the schema anywhere. kvmnet reads YAML 1.1 (PyYAML) and the language server 1.2 unless
its setting `yaml.yamlVersion` is `"1.1"`: under 1.2 `yes` is not a boolean, and an
unquoted all-digit MAC is text where kvmnet reads a number (and says to quote it).

The schema checks every key and the form of every value. `kvmnet validate` also checks
what a schema cannot: a subnet with host bits set, a port range written backwards, and
every rule across keys (overlapping subnets, a DHCP range outside its subnet, a NIC on an
unknown network, ...).
"""


def markdown() -> str:
    """The whole reference, as docs/SPEC.md holds it."""
    schema = json_schema()
    defs: dict[str, Schema] = schema["definitions"]
    places = _places(schema, defs)
    top = {k: v for k, v in schema.items() if k != "description"}   # (the intro says it)
    parts = [INTRO, _section("The file", top, defs, [])]
    parts += [_section(name, defs[name], defs, places[name]) for name in places]
    parts.append("## Value types\n\nHow values written as text are spelled.\n")
    parts += [_value_type(name, defs[name]) for name in sorted(defs) if name not in places
              and _mapping(defs[name]) is None]
    return "\n".join(parts)


def _ref(node: Schema) -> str | None:
    """The definition a schema refers to, directly or as allOf's only member."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[1]
    only = node.get("allOf", [])
    return _ref(only[0]) if len(only) == 1 else None


def _mapping(node: Schema) -> Schema | None:
    """A model's mapping: the schema itself, or its form among its shorthands."""
    if "properties" in node:
        return node
    return next((f for f in node.get("anyOf", []) if "properties" in f), None)


def _places(root: Schema, defs: dict[str, Schema]) -> dict[str, list[tuple[str, str]]]:
    """Each model under the root, in the order a reader meets them (depth first), with
    where it goes: (the model holding it, the key path in that one; NAME: a key of your
    choice, []: a list's items). The root is ''."""
    out: dict[str, list[tuple[str, str]]] = {}

    def walk(node: Any, owner: str, path: str) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n, owner, path)
            return
        if not isinstance(node, dict):
            return
        name = _ref(node)
        if name is not None and _mapping(defs[name]) is not None:
            if (owner, path) not in out.get(name, []):
                out.setdefault(name, []).append((owner, path))
            if len(out[name]) == 1:
                walk(defs[name], name, "")
            return
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, owner, f"{path}.{key}" if path else key)
        walk(node.get("anyOf"), owner, path)
        walk(node.get("allOf"), owner, path)
        if isinstance(node.get("items"), dict):
            walk(node["items"], owner, path + "[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], owner, path + ".NAME")

    walk(root, "", "")
    return out


def _section(title: str, node: Schema, defs: dict[str, Schema],
             where: list[tuple[str, str]]) -> str:
    mapping = _mapping(node) or {}
    lines = [f"## {title}", ""]
    owners: dict[str, list[str]] = {}
    for owner, path in where:
        owners.setdefault(owner, []).append(f"`{path}`")
    if owners:
        lines += ["In " + "; ".join(f"{_link(o)} {', '.join(paths)}"
                                    for o, paths in owners.items()) + ".", ""]
    if node.get("description"):
        lines += [_md(node["description"]), ""]
    shorthands = [f for f in node.get("anyOf", []) if f is not mapping]
    if shorthands:
        lines += ["Written as " + " or ".join(_type(f, defs) for f in shorthands)
                  + ", or as a mapping:", ""]
    lines += ["| key | type | default | meaning | example |", "|---|---|---|---|---|"]
    required = set(mapping.get("required", []))
    for key, prop in mapping.get("properties", {}).items():
        cells = [f"`{key}`", _type(prop, defs), _default(prop, key in required),
                 _md(prop.get("description", "")), _example(key, prop, defs)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _link(model: str) -> str:
    """A link to a model's section ('': the file's)."""
    return f"[{model}](#{model.lower()})" if model else "[the file](#the-file)"


def _md(text: str) -> str:
    """Prose for Markdown: '<network>' would be read as an HTML tag and vanish."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _type(node: Schema, defs: dict[str, Schema]) -> str:
    """A reader's name for a schema: links to the sections of models and value types."""
    name = _ref(node)
    if name is not None:
        return f"[{defs[name].get('title', name)}](#{name.lower()})"
    forms = [f for f in node.get("anyOf", []) if f != _NULL]
    if len(forms) == 2 and forms[1].get("items") == forms[0]:
        return f"{_type(forms[0], defs)}, or a list of them"
    if forms:
        return " or ".join(_type(f, defs) for f in forms)
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    kind = node.get("type")
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list of {_type(node['items'], defs)}"
    if kind == "array":
        return "[" + ", ".join(_type(i, defs) for i in node["items"]) + "]"
    if kind == "object":
        keys = _type(node["propertyNames"], defs) if "propertyNames" in node else "text"
        values = node.get("additionalProperties")
        return f"mapping: {keys} -> {_type(values, defs) if values else 'anything'}"
    if "title" in node:
        return str(node["title"])
    if kind == "integer":
        low, high = node.get("minimum"), node.get("maximum")
        span = f" {low}-{high}" if high is not None else f" >= {low}" if low is not None else ""
        return "integer" + span
    if kind == "boolean":
        return "true or false"
    return str(kind or "anything")


def _flow(value: Any) -> str:
    """A value as YAML writes it inline (quoted where YAML 1.1 would misread it)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _default(prop: Schema, required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop or prop["default"] is None:
        return "not set"
    return f"`{_flow(prop['default'])}`"


def _example(key: str, prop: Schema, defs: dict[str, Schema]) -> str:
    for value in _examples(prop, defs):
        return f"`{key}: {_flow(value)}`"
    return ""


def _examples(prop: Schema, defs: dict[str, Schema]) -> Iterator[Any]:
    """The key's own example, else its value type's, else an enum's or boolean's value
    other than the default."""
    yield from prop.get("examples", [])
    forms = [prop] + [f for f in prop.get("anyOf", []) if f != _NULL]
    for form in forms:
        name = _ref(form)
        if name is not None and _mapping(defs[name]) is None:
            yield from defs[name].get("examples", [])
        yield from (v for v in form.get("enum", []) if v != prop.get("default"))
        if form.get("type") == "boolean":
            yield not prop.get("default", False)


def _value_type(name: str, node: Schema) -> str:
    examples = ", ".join(f"`{_flow(v)}`" for v in node.get("examples", []))
    return "\n".join([f"### {name}", "", f"**{node.get('title', name)}**: "
                      + _md(node.get("description", "")), ""]
                     + ([f"Example: {examples}", ""] if examples else []))

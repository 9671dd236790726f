"""The spec's JSON Schema (spec/schema.py, `kvmnet schema`): the checked-in copy is the
generated one, it is draft-07 through and through (what yaml-language-server reads), and
every key has the help an editor shows."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kvmnet.cli.main import main
from kvmnet.model import spec as model
from kvmnet.model.spec import Spec
from kvmnet.spec.load import compose
from kvmnet.spec.reference import markdown
from kvmnet.spec.schema import DRAFT_07, json_schema, schema_text
from lab.catalogue import BAD

try:
    import jsonschema
except ImportError:  # pragma: no cover - an install from before the test extra had it
    pytest.fail("jsonschema is missing: run ./scripts/setup", pytrace=False)

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "schema" / "kvmnet.schema.json"
REGENERATE = "regenerate it: .venv/bin/kvmnet schema > schema/kvmnet.schema.json"
SPEC_MD = ROOT / "docs" / "SPEC.md"


def test_checked_in_schema_is_the_generated_one() -> None:
    assert CHECKED_IN.exists(), f"{CHECKED_IN} is missing: {REGENERATE}"
    assert CHECKED_IN.read_text() == schema_text(), (
        f"{CHECKED_IN.relative_to(ROOT)} differs from the models' schema: {REGENERATE}")


def test_checked_in_reference_is_the_generated_one() -> None:
    hint = "regenerate it: .venv/bin/kvmnet schema --markdown > docs/SPEC.md"
    assert SPEC_MD.exists(), f"{SPEC_MD} is missing: {hint}"
    assert SPEC_MD.read_text() == markdown(), f"docs/SPEC.md differs from the models: {hint}"


def test_the_reference_lists_every_key() -> None:
    text = markdown()
    for c in spec_models():
        section = text.split(f"\n## {c.__name__ if c is not Spec else 'The file'}\n", 1)
        assert len(section) == 2, f"no section for {c.__name__}"
        body = section[1].split("\n## ", 1)[0]
        for name, field in c.model_fields.items():
            row = next((ln for ln in body.splitlines() if ln.startswith(f"| `{name}` |")), "")
            assert row, f"{c.__name__}.{name} is not in its section"
            assert (field.description or "").split(":")[0][:20] in row.replace("&lt;", "<")


def test_every_example_follows_the_schema() -> None:
    """The examples editors offer and docs/SPEC.md shows are valid where they stand."""
    schema = json_schema()
    checked = 0
    for sub in _subschemas(schema):
        for value in sub.get("examples", []):
            here = {**sub, "definitions": schema["definitions"]}
            errors = [e.message for e in jsonschema.Draft7Validator(here).iter_errors(value)]
            assert not errors, f"example {value!r} of {sub.get('description')!r}: {errors}"
            checked += 1
    assert checked >= 60


def _subschemas(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [s for n in node for s in _subschemas(n)]
    if not isinstance(node, dict):
        return []
    return [node] + [s for k, v in node.items() if k not in ("examples", "default", "enum")
                     for s in _subschemas(v)]


def test_it_is_a_draft_07_schema() -> None:
    schema = json_schema()
    assert schema["$schema"] == DRAFT_07
    assert schema["title"] == "kvmnet spec"
    assert "kvmnet validate" in schema["description"]   # (what the schema leaves to it)
    jsonschema.Draft7Validator.check_schema(schema)


# Every keyword draft-07 defines, and the one editors' extension kvmnet uses.
DRAFT_07_KEYWORDS = {
    "$schema", "$id", "$ref", "$comment", "title", "description", "default", "examples",
    "readOnly", "writeOnly", "type", "enum", "const", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "items", "additionalItems", "maxItems", "minItems", "uniqueItems", "contains",
    "maxProperties", "minProperties", "required", "properties", "patternProperties",
    "additionalProperties", "dependencies", "propertyNames", "if", "then", "else", "allOf",
    "anyOf", "oneOf", "not", "format", "contentMediaType", "contentEncoding", "definitions",
    "patternErrorMessage"}
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "dependencies")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "items")
_SCHEMAS = ("additionalProperties", "additionalItems", "items", "not", "if", "then", "else",
            "contains", "propertyNames")


def keywords(schema: Any, where: str = "#") -> list[tuple[str, str]]:
    """(JSON pointer, keyword) of every keyword in `schema` and its subschemas."""
    if not isinstance(schema, dict):
        return []
    out = [(where, k) for k in schema]
    for k, v in schema.items():
        if k in _SCHEMA_MAPS:
            for name, sub in v.items():
                out += keywords(sub, f"{where}/{k}/{name}")
        elif k in _SCHEMA_LISTS and isinstance(v, list):
            for i, sub in enumerate(v):
                out += keywords(sub, f"{where}/{k}/{i}")
        elif k in _SCHEMAS:
            out += keywords(v, f"{where}/{k}")
    return out


def test_only_draft_07_keywords() -> None:
    found = keywords(json_schema())
    assert {k for _, k in found} >= {"definitions", "allOf", "propertyNames", "items"}
    foreign = sorted({(w, k) for w, k in found if k not in DRAFT_07_KEYWORDS})
    assert not foreign, f"not draft-07 (pydantic's 2020-12 left over?): {foreign[:10]}"
    refs = [v for _, v in _refs(json_schema())]
    assert refs and all(r.startswith("#/definitions/") for r in refs)


def _refs(node: Any) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        own = [("$ref", node["$ref"])] if "$ref" in node else []
        assert not (own and len(node) > 1), f"a $ref with siblings (ignored in draft-07): {node}"
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def spec_models() -> list[type[BaseModel]]:
    return [c for _, c in inspect.getmembers(model, inspect.isclass)
            if issubclass(c, model.Model) and c is not model.Model]


def test_every_key_has_help() -> None:
    """What an editor shows on hover and docs/SPEC.md lists: a description per model and
    per key."""
    assert len(spec_models()) >= 20
    missing = [f"{c.__name__}.{name}" for c in spec_models()
               for name, field in c.model_fields.items() if not field.description]
    missing += [c.__name__ for c in spec_models() if not (c.__doc__ or "").strip()]
    assert not missing, f"describe these (Field(description=...), a docstring): {missing}"
    props = json_schema()["definitions"]["Network"]["properties"]
    assert props["mode"]["description"].startswith("nat: ")
    assert "title" not in props["mode"]    # (pydantic's "Mode" only repeats the key)


def test_unknown_keys_are_refused_everywhere() -> None:
    defs = json_schema()["definitions"]
    objects = {name: d for name, d in defs.items()
               if "properties" in d or any("properties" in f for f in d.get("anyOf", []))}
    assert set(objects) == {c.__name__ for c in spec_models()} - {"Spec"}   # (the root)
    for name, d in objects.items():
        mapping = d if "properties" in d else next(f for f in d["anyOf"] if "properties" in f)
        assert mapping["additionalProperties"] is False, name
    assert json_schema()["additionalProperties"] is False


def test_cli_prints_it_and_writes_it(capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()
    assert main(["schema", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown()
    target = tmp_path / "kvmnet.schema.json"
    assert main(["schema", "--output", str(target)]) == 0
    assert target.read_text() == schema_text()
    assert main(["schema", "-o", str(tmp_path / "nowhere" / "x" / "s.json")]) == 0
    (tmp_path / "file").write_text("")
    assert main(["schema", "-o", str(tmp_path / "file" / "s.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kvmnet: error: cannot write ") and "Traceback" not in err


# ------------------------------------------------------------------ examples, bad input

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../schema/kvmnet.schema.json"
# Examples written to fail the schema on purpose: none. seed-as-written.yaml's two
# mistakes are semantic (a network address as the host's, a NIC on the wrong bridge):
# the schema takes it, `kvmnet validate` refuses it (test_check, test_cli_basic).
SCHEMA_INVALID_EXAMPLES: set[str] = set()


def checked_in_validator() -> Any:
    """What an editor reads: the file, not the generator."""
    return jsonschema.Draft7Validator(json.loads(CHECKED_IN.read_text()))


def read_as_loader(path: Path) -> Any:
    """The plain data `kvmnet validate` types: PyYAML's YAML 1.1 reading, as load does."""
    problems: list[Any] = []
    data, _ = compose(path.read_text(), str(path), problems)
    assert not problems, problems
    return data


def test_every_example_names_the_schema() -> None:
    assert len(EXAMPLES) >= 2
    for path in EXAMPLES:
        first = path.read_text().splitlines()[0]
        assert first == MODELINE, f"{path.name} must start with {MODELINE!r}"
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target == CHECKED_IN


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_follow_the_schema(path: Path) -> None:
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}"
              for e in checked_in_validator().iter_errors(read_as_loader(path))]
    if path.name in SCHEMA_INVALID_EXAMPLES:
        assert errors, f"{path.name} is listed as schema-invalid but the schema takes it"
    else:
        assert not errors, f"{path.name}: {errors}"


# Type errors of the bad-input catalogue: a wrong type, an unknown key, a value in the
# wrong form. bad_subnet_host_bits is the one a schema cannot see (host bits);
# type_unquoted_mac the loader refuses as YAML text, before any typing (a number YAML
# 1.1 misreads: kvmnet.spec.scalars); the other files are YAML-level (syntax,
# duplicate keys, tags) or semantic (check_*).
TYPE_ERRORS = sorted(p for pattern in ("type_*", "unknown_key_*", "bad_*", "name_*",
                                       "bridge_name_*", "text_*", "root_is_*",
                                       "dns_names_bad*", "nonascii_digits*")
                     for p in BAD.glob(f"{pattern}.yaml")
                     if p.stem not in ("bad_subnet_host_bits", "type_unquoted_mac"))


def _path_in(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic's error location without its validator and union labels: the path of
    keys and indexes into `data`."""
    out: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part in data or (
                isinstance(data, list) and isinstance(part, int) and part < len(data)):
            out.append(part)
            data = data[part]
    return tuple(out)


@pytest.mark.parametrize("path", TYPE_ERRORS, ids=[p.stem for p in TYPE_ERRORS])
def test_type_errors_are_refused_by_the_schema_at_their_place(path: Path) -> None:
    """The schema refuses each, and only on the way to what the models refuse: each
    schema error is at a key the loader's error lies under (or at it)."""
    data = read_as_loader(path)
    with pytest.raises(ValidationError) as exc:
        Spec.model_validate(data, strict=True)
    wanted = {_path_in(data, tuple(e["loc"])) for e in exc.value.errors()
              if "is reversed" not in e["msg"]}   # (a schema cannot compare two ports)
    found = {tuple(e.absolute_path) for e in checked_in_validator().iter_errors(data)}
    assert found, f"the schema takes {path.name}"
    stray = [f for f in found if not any(w[:len(f)] == f for w in wanted)]
    assert not stray, f"schema errors at {stray}, the loader's at {sorted(wanted, key=str)}"
    missed = [w for w in wanted if not any(w[:len(f)] == f for f in found)]
    assert not missed, f"the schema misses {missed} (it found {found})"

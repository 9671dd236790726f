"""A small typed-model base: frozen models validated from plain data, every error at once.

Why not pydantic: importing it and building the spec's schema took ~190 ms of every
kvmnet process on the benchmark machine (60% of `kvmnet validate`; issue 8's start-up
target is 250 ms for the whole command). The spec needs a small part of it: frozen
models with defaults, str/int/bool/Literal/Optional/list/dict fields, value parsers
(`BeforeValidator`/`AfterValidator`), a few bounds, and errors that say where and what.
This module gives exactly that, with the method names kvmnet already used
(`model_validate`, `model_copy`, `model_dump`, `model_fields`), and errors in the same
shape (`type`, `loc`, `msg`, `input`, `ctx`) so spec.load maps them to FILE:LINE:COL.

Validators are compiled once per model (on first use) into closures: no per-value type
dispatch. `strict=True` (the YAML loader: YAML already typed every value) accepts only
the exact types; the default (lax) also reads the text forms libvirt's XML gives
("9000", "yes"), as pydantic's lax mode did.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, Union

_T = TypeVar("_T", bound="Model")
_F = TypeVar("_F")
_MISSING: Any = object()
Loc = tuple[str | int, ...]
Errors = list[dict[str, Any]]
# A compiled validator: (value, loc, errors, strict) -> value, or _BAD after adding errors.
Check = Callable[[Any, Loc, Errors, bool], Any]
_BAD: Any = object()


class ValidationError(ValueError):
    """Every problem found in one validation; `.errors()` lists them as dicts."""

    def __init__(self, title: str, errors: Errors) -> None:
        self.title = title
        self._errors = errors
        lines = [f"{len(errors)} validation error(s) for {title}"]
        lines += [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in errors]
        super().__init__("\n".join(lines))

    def errors(self, include_url: bool = False) -> Errors:
        return list(self._errors)

    def error_count(self) -> int:
        return len(self._errors)


# -- field declarations and annotations --------------------------------------------


class FieldInfo:
    __slots__ = ("name", "default", "default_factory", "ge", "le", "min_length", "pattern",
                 "description", "annotation", "raw")

    def __init__(self, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None,
                 ge: int | None = None, le: int | None = None, min_length: int | None = None,
                 pattern: str | None = None, description: str | None = None) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.ge, self.le, self.min_length = ge, le, min_length
        self.pattern = pattern
        self.description = description
        self.annotation: Any = None   # the type without Annotated metadata (as pydantic's)
        self.raw: Any = None          # the full resolved annotation

    def is_required(self) -> bool:
        return self.default is _MISSING and self.default_factory is None

    def get_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default

    def __repr__(self) -> str:
        return f"FieldInfo({self.name}: {self.annotation!r})"


def Field(default: Any = _MISSING, *, default_factory: Callable[[], Any] | None = None,  # noqa: N802
          ge: int | None = None, le: int | None = None, min_length: int | None = None,
          pattern: str | None = None, description: str | None = None) -> Any:
    """A field's default and bounds (the names pydantic uses)."""
    return FieldInfo(default, default_factory, ge, le, min_length, pattern, description)


class BeforeValidator:
    """Annotated metadata: func(raw value) -> value, before the type check."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class AfterValidator:
    """Annotated metadata: func(typed value) -> value, after the type check."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class PlainSerializer:
    """Annotated metadata: how model_dump(mode="json") writes the value."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class _Decl:
    """A validator declared on a model class (see field_validator / model_validator)."""

    __slots__ = ("func", "mode", "fields")

    def __init__(self, func: Any, mode: str, fields: tuple[str, ...]) -> None:
        self.func, self.mode, self.fields = func, mode, fields


class _Declare:
    def __init__(self, mode: str, fields: tuple[str, ...]) -> None:
        self.mode, self.fields = mode, fields

    def __call__(self, f: _F) -> _F:
        return typing.cast(_F, _Decl(f, self.mode, self.fields))


def field_validator(*fields: str, mode: Literal["before", "after"] = "after") -> _Declare:
    """A classmethod run on the named fields' values, before or after their type check."""
    return _Declare(mode, fields)


def model_validator(*, mode: Literal["before", "after"]) -> _Declare:
    """before: a classmethod on the raw input; after: a method on the built model."""
    return _Declare(mode, ())


# -- the model ------------------------------------------------------------------------


class Model:
    """Frozen, validated on construction (lax) and by model_validate; compared by value."""

    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    __kv_decls__: ClassVar[dict[str, _Decl]] = {}
    __kv_check__: ClassVar[Check | None] = None
    __kv_dump__: ClassVar[dict[str, Callable[[Any], Any]] | None] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        fields: dict[str, FieldInfo] = {}
        decls: dict[str, _Decl] = {}
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, Model):
                fields.update(base.model_fields)
                decls.update(base.__kv_decls__)
        for name, value in list(cls.__dict__.items()):
            if isinstance(value, _Decl):
                decls[name] = value
                fn = value.func
                setattr(cls, name, fn)   # the plain (class)method stays callable
        for name, ann in cls.__dict__.get("__annotations__", {}).items():
            if isinstance(ann, str) and ann.startswith("ClassVar"):
                continue
            value = cls.__dict__.get(name, _MISSING)
            info = value if isinstance(value, FieldInfo) else FieldInfo(default=value)
            info.name = name
            fields[name] = info
            if name in cls.__dict__:
                delattr(cls, name)   # instances keep their values in __dict__
        cls.model_fields = fields
        cls.__kv_decls__ = decls
        cls.__kv_check__ = None
        cls.__kv_dump__ = None

    def __init__(self, **data: Any) -> None:
        built = type(self).model_validate(data)
        object.__setattr__(self, "__dict__", built.__dict__)

    # -- validation
    @classmethod
    def model_validate(cls: type[_T], obj: Any, *, strict: bool = False) -> _T:
        errors: Errors = []
        out = _checker(cls)(obj, (), errors, strict)
        if errors:
            raise ValidationError(cls.__name__, errors)
        return typing.cast(_T, out)

    @classmethod
    def model_construct(cls: type[_T], **values: Any) -> _T:
        """A model from trusted values, unvalidated; missing fields take their defaults."""
        return _instance(cls, {n: values[n] if n in values else f.get_default()
                               for n, f in cls.model_fields.items()})

    # -- copies and output
    def model_copy(self: _T, *, update: dict[str, Any] | None = None, deep: bool = False) -> _T:
        """A copy with `update` applied as given (not validated, as pydantic's)."""
        d = copy.deepcopy(self.__dict__) if deep else dict(self.__dict__)
        if update:
            d.update(update)
        return _instance(type(self), d)

    def model_dump(self, *, mode: Literal["python", "json"] = "python",
                   exclude_defaults: bool = False,
                   exclude: set[str] | None = None) -> dict[str, Any]:
        """The fields as plain data (json: every value JSON-ready); `exclude`: top-level
        fields to leave out."""
        out = _dump_model(self, mode == "json", exclude_defaults)
        for name in exclude or ():
            out.pop(name, None)
        return out

    def model_dump_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"),
                          ensure_ascii=False)

    # -- frozen value semantics
    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is frozen: use model_copy(update=...)")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__))


def _instance(cls: type[_T], d: dict[str, Any]) -> _T:
    """An instance of cls holding d as its fields, without validation."""
    new = object.__new__(cls)
    object.__setattr__(new, "__dict__", d)
    return new


def _rebuild(cls: type[Model], d: dict[str, Any]) -> Model:
    return _instance(cls, dict(d))   # (pickle and copy: never share the dict)


# -- compiling validators ---------------------------------------------------------------


def _err(errors: Errors, kind: str, loc: Loc, msg: str, value: Any,
         ctx: dict[str, Any] | None = None) -> Any:
    e: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        e["ctx"] = ctx
    errors.append(e)
    return _BAD


def _value_error(errors: Errors, loc: Loc, exc: Exception, value: Any) -> Any:
    return _err(errors, "value_error", loc, f"Value error, {exc}", value, {"error": exc})


def _hints(cls: type[Model]) -> dict[str, Any]:
    """The resolved annotations of the model's fields (each in its own module's names)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        own = klass.__dict__.get("__annotations__", {})
        names = vars(sys.modules[klass.__module__])
        for name, ann in own.items():
            if name in cls.model_fields:
                out[name] = eval(ann, names) if isinstance(ann, str) else ann  # noqa: S307
    return out


def _checker(cls: type[Model]) -> Check:
    chk = cls.__dict__.get("__kv_check__")
    if chk is None:
        chk = _compile_model(cls)
    return chk


def _compile_model(cls: type[Model]) -> Check:
    # Installed before the fields compile, so a recursive type refers to the model lazily.
    def lazy(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        return real(v, loc, errors, strict)

    cls.__kv_check__ = lazy
    hints = _hints(cls)
    fields = cls.model_fields
    decls = cls.__kv_decls__
    before_model = [getattr(cls, n) for n, d in decls.items()
                    if d.mode == "before" and not d.fields]
    after_model = [d.func for d in decls.values() if d.mode == "after" and not d.fields]
    checks: dict[str, Check] = {}
    # Every field in order, holding its default (a placeholder for required fields and
    # default factories): one dict copy per model, then only the keys given are visited.
    template: dict[str, Any] = {}
    required: list[str] = []
    factories: list[tuple[str, Callable[[], Any]]] = []
    for name, info in fields.items():
        raw = hints[name]
        info.raw = raw
        info.annotation = _strip(raw)
        check = _compile(raw, info)
        fb = [getattr(cls, n) for n, d in decls.items() if d.mode == "before" and name in d.fields]
        fa = [getattr(cls, n) for n, d in decls.items() if d.mode == "after" and name in d.fields]
        if fb or fa:
            check = _with_field_validators(check, fb, fa)
        checks[name] = check
        template[name] = _MISSING if info.default_factory is not None else info.default
        if info.is_required():
            required.append(name)
        elif info.default_factory is not None:
            factories.append((name, info.default_factory))
    title = cls.__name__

    def real(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        if type(v) is cls:
            return v
        for f in before_model:
            try:
                v = f(v)
            except ValueError as e:
                return _value_error(errors, loc, e, v)
            if type(v) is cls:
                return v
        if not isinstance(v, dict):
            if isinstance(v, cls):
                return v
            return _err(errors, "model_type", loc,
                        f"Input should be a valid dictionary or instance of {title}", v)
        n0 = len(errors)
        out = dict(template)
        for k, x in v.items():
            check = checks.get(k)
            if check is None:
                _err(errors, "extra_forbidden", (*loc, k), "Extra inputs are not permitted", x)
            else:
                out[k] = check(x, (*loc, k), errors, strict)
        for name in required:
            if name not in v:
                _err(errors, "missing", (*loc, name), "Field required", v)
        for name, factory in factories:
            if name not in v:
                out[name] = factory()
        if len(errors) > n0:
            return _BAD
        obj = _instance(cls, out)
        for f in after_model:
            try:
                obj = f(obj)
            except ValueError as e:
                return _value_error(errors, loc, e, v)
        return obj

    return lazy


def _with_field_validators(check: Check, before: list[Any], after: list[Any]) -> Check:
    """check, with value parsers run before it and after it (a ValueError is the field's
    error): field validators and Annotated's Before/AfterValidator alike."""
    def run(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        for f in before:
            try:
                v = f(v)
            except ValueError as e:
                return _value_error(errors, loc, e, v)
        v = check(v, loc, errors, strict)
        if v is _BAD:
            return v
        for f in after:
            try:
                v = f(v)
            except ValueError as e:
                return _value_error(errors, loc, e, v)
        return v
    return run


def _strip(tp: Any) -> Any:
    return tp.__origin__ if typing.get_origin(tp) is typing.Annotated else tp


def _is_union(tp: Any) -> bool:
    o = typing.get_origin(tp)
    return o is Union or o is types.UnionType


def _compile(tp: Any, info: FieldInfo | None = None) -> Check:
    """The validator of one annotation (info: the field's bounds, applied to its value)."""
    check = _compile_type(tp)
    if info is None or (info.ge is None and info.le is None and info.min_length is None
                        and info.pattern is None):
        return check
    ge, le, min_length = info.ge, info.le, info.min_length
    pattern = re.compile(info.pattern) if info.pattern is not None else None
    pat_text = info.pattern

    def bounded(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        v = check(v, loc, errors, strict)
        if v is _BAD or v is None:
            return v
        if ge is not None and v < ge:
            return _err(errors, "greater_than_equal", loc,
                        f"Input should be greater than or equal to {ge}", v, {"ge": ge})
        if le is not None and v > le:
            return _err(errors, "less_than_equal", loc,
                        f"Input should be less than or equal to {le}", v, {"le": le})
        if min_length is not None and len(v) < min_length:
            kind = "List" if isinstance(v, list) else "Value"
            return _err(errors, "too_short", loc,
                        f"{kind} should have at least {min_length} item"
                        f"{'s' if min_length != 1 else ''} after validation, not {len(v)}",
                        v, {"min_length": min_length, "actual_length": len(v)})
        if pattern is not None and not pattern.search(v):
            return _err(errors, "string_pattern_mismatch", loc,
                        f"String should match pattern '{pat_text}'", v, {"pattern": pat_text})
        return v
    return bounded


def _compile_type(tp: Any) -> Check:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _compile_annotated(tp)
    if _is_union(tp):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(rest) < len(args):
            inner = (_compile_type(rest[0]) if len(rest) == 1
                     else _compile_instance(tuple(rest)))

            def optional(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
                return None if v is None else inner(v, loc, errors, strict)
            return optional
        if all(isinstance(a, type) and not issubclass(a, Model) for a in rest):
            return _compile_instance(tuple(rest))
        raise TypeError(f"unsupported union {tp!r}")
    if origin is Literal:
        return _compile_literal(typing.get_args(tp))
    if origin is list:
        return _compile_list(_compile_type(typing.get_args(tp)[0]))
    if origin is dict:
        k, v = typing.get_args(tp)
        return _compile_dict(_compile_type(k), _compile_type(v))
    if tp is Any:
        return lambda v, loc, errors, strict: v
    if isinstance(tp, type) and issubclass(tp, Model):
        return lambda v, loc, errors, strict: _checker(tp)(v, loc, errors, strict)
    if tp is str:
        return _check_str
    if tp is bool:
        return _check_bool
    if tp is int:
        return _check_int
    if isinstance(tp, type):
        return _compile_instance((tp,))
    raise TypeError(f"unsupported field type {tp!r}")


def _compile_annotated(tp: Any) -> Check:
    inner = _compile_type(tp.__origin__)
    before = [m.func for m in tp.__metadata__ if isinstance(m, BeforeValidator)]
    after = [m.func for m in tp.__metadata__ if isinstance(m, AfterValidator)]
    if not before and not after:
        return inner
    return _with_field_validators(inner, before, after)


def _check_str(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
    if type(v) is str:
        return v
    if isinstance(v, str):
        return str(v)
    return _err(errors, "string_type", loc, "Input should be a valid string", v)


def _check_int(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
    if type(v) is int:
        return v
    if not strict:
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, str):
            try:
                return int(v.strip())
            except ValueError:
                return _err(errors, "int_parsing", loc,
                            "Input should be a valid integer, unable to parse string as an "
                            "integer", v)
        if isinstance(v, float) and v.is_integer():
            return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    return _err(errors, "int_type", loc, "Input should be a valid integer", v)


_TRUE = {"true", "yes", "on", "1", "t", "y"}
_FALSE = {"false", "no", "off", "0", "f", "n"}


def _check_bool(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
    if v is True or v is False:
        return v
    if not strict:
        if isinstance(v, str):
            t = v.strip().lower()
            if t in _TRUE:
                return True
            if t in _FALSE:
                return False
            return _err(errors, "bool_parsing", loc,
                        "Input should be a valid boolean, unable to interpret input", v)
        if type(v) is int and v in (0, 1):
            return bool(v)
    return _err(errors, "bool_type", loc, "Input should be a valid boolean", v)


def _compile_instance(classes: tuple[type, ...]) -> Check:
    names = " or ".join(c.__name__ for c in classes)

    def instance(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        if isinstance(v, classes):
            return v
        return _err(errors, "is_instance_of", loc, f"Input should be an instance of {names}", v,
                    {"class": names})
    return instance


def _compile_literal(options: tuple[Any, ...]) -> Check:
    allowed = {(type(o), o) for o in options}
    shown = [repr(o) for o in options]
    expected = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"

    def literal(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        try:
            if (type(v), v) in allowed:
                return v
        except TypeError:   # unhashable input
            pass
        return _err(errors, "literal_error", loc, f"Input should be {expected}", v,
                    {"expected": expected})
    return literal


def _compile_list(item: Check) -> Check:
    def list_(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        if not isinstance(v, list):
            if strict or not isinstance(v, tuple):
                return _err(errors, "list_type", loc, "Input should be a valid list", v)
        n0 = len(errors)
        out = [item(x, (*loc, i), errors, strict) for i, x in enumerate(v)]
        return _BAD if len(errors) > n0 else out
    return list_


def _compile_dict(key: Check, value: Check) -> Check:
    def dict_(v: Any, loc: Loc, errors: Errors, strict: bool) -> Any:
        if not isinstance(v, dict):
            return _err(errors, "dict_type", loc, "Input should be a valid dictionary", v)
        n0 = len(errors)
        out = {}
        for k, x in v.items():
            kk = key(k, (*loc, k, "[key]"), errors, strict)
            out[kk if kk is not _BAD else k] = value(x, (*loc, k), errors, strict)
        return _BAD if len(errors) > n0 else out
    return dict_


# -- output -------------------------------------------------------------------------------


def _dumpers(cls: type[Model]) -> dict[str, Callable[[Any], Any]]:
    """field -> how JSON mode writes its value, for fields with a PlainSerializer."""
    d = cls.__dict__.get("__kv_dump__")
    if d is None:
        _checker(cls)   # resolves the annotations
        d = {}
        for name, info in cls.model_fields.items():
            f = _serializer(info.raw)
            if f is not None:
                d[name] = f
        cls.__kv_dump__ = d
    return d


def _serializer(tp: Any) -> Callable[[Any], Any] | None:
    if typing.get_origin(tp) is typing.Annotated:
        for m in tp.__metadata__:
            if isinstance(m, PlainSerializer):
                return m.func
        tp = tp.__origin__
    origin = typing.get_origin(tp)
    if _is_union(tp):
        for a in typing.get_args(tp):
            f = _serializer(a)
            if f is not None:
                return f
    elif origin is list:
        g = _serializer(typing.get_args(tp)[0])
        if g is not None:
            return _each(g)
    elif origin is dict:
        g = _serializer(typing.get_args(tp)[1])
        if g is not None:
            return _each_value(g)
    return None


def _each(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: [_plain(x, f) for x in v]


def _each_value(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: {k: _plain(x, f) for k, x in v.items()}


def _plain(v: Any, f: Callable[[Any], Any]) -> Any:
    return v if v is None or isinstance(v, Model) else f(v)


def _dump(v: Any, as_json: bool, exclude_defaults: bool) -> Any:
    if isinstance(v, Model):
        return _dump_model(v, as_json, exclude_defaults)
    if isinstance(v, list | tuple) and not hasattr(v, "_fields"):
        return [_dump(x, as_json, exclude_defaults) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x, as_json, exclude_defaults) for k, x in v.items()}
    if as_json and not isinstance(v, str | int | float | bool | type(None)):
        return str(v)
    return v


def _dump_model(m: Model, as_json: bool, exclude_defaults: bool) -> dict[str, Any]:
    cls = type(m)
    ser = _dumpers(cls) if as_json else {}
    fields = cls.model_fields
    out: dict[str, Any] = {}
    for name, value in m.__dict__.items():
        if exclude_defaults:
            info = fields[name]
            if not info.is_required() and value == info.get_default():
                continue
        f = ser.get(name)
        if f is not None and value is not None and not isinstance(value, Model):
            value = f(value)
            if isinstance(value, list | dict):
                value = _dump(value, as_json, exclude_defaults)
        else:
            value = _dump(value, as_json, exclude_defaults)
        out[name] = value
    return out

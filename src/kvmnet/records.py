"""Records: classes with dataclass semantics, built without compiling code.

Why not dataclasses: `@dataclass` writes __init__/__repr__/__eq__/__hash__/__setattr__
as source text and `exec`s it, ~0.55 ms per frozen class; the classes a `kvmnet apply`
no-op imports cost ~20-25 ms of every process that way. Here the methods are closures
over the field list, made once per class (10-30 us a class).

What is kept of dataclasses (what kvmnet uses): fields from the class's annotations in
body order, a record base's fields first; class-level defaults and `field(default=...,
default_factory=...)`; ClassVar annotations are not fields; __init__ takes fields by
position or keyword and raises TypeErrors as a dataclass's does; __post_init__ runs after
it; `frozen=True` forbids assignment (FrozenRecordError, an AttributeError); __eq__ by
class and field values; __hash__ from the field values when frozen, None otherwise;
__repr__ like a dataclass's; `replace`, `asdict`, `fields`. Methods the class body
defines itself (__init__, __repr__, __eq__, __hash__) are kept, as dataclasses does.
Not kept: order=, slots=, kw_only=, InitVar, init=/repr=/compare= per field, an
__init__ signature that `inspect` can show (it is *args, **kwargs) and the generated
__doc__; dataclasses.is_dataclass() is False for a record (use is_record()).

Annotations are never evaluated (modules use `from __future__ import annotations`);
`typing.dataclass_transform` tells type checkers to treat records as dataclasses.
"""

from __future__ import annotations

import typing
from _thread import get_ident
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, overload

_T = TypeVar("_T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenRecordError(AttributeError):
    """An assignment to (or deletion of) a field of a frozen record."""


class Field:
    """One field of a record: its name, and its default or the factory making it."""

    __slots__ = ("name", "default", "default_factory")

    def __init__(self, default: Any = MISSING,
                 default_factory: Callable[[], Any] | None = None) -> None:
        if default is not MISSING and default_factory is not None:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r})")


@overload
def field(*, default: _T) -> _T: ...
@overload
def field(*, default_factory: Callable[[], _T]) -> _T: ...
@overload
def field() -> Any: ...
def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    """A field's default (`default`), or a factory called for each new instance."""
    return Field(default, default_factory)


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, frozen: bool = False) -> Callable[[type[_T]], type[_T]]: ...
@typing.dataclass_transform(field_specifiers=(field,))
def record(cls: type[_T] | None = None, /, *,
           frozen: bool = False) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """Make cls a record: `@record` or `@record(frozen=True)`."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def is_record(obj: Any) -> bool:
    """obj is a record class or an instance of one."""
    cls = obj if isinstance(obj, type) else type(obj)
    return hasattr(cls, "__record_fields__")


def fields(cls_or_obj: Any) -> tuple[Field, ...]:
    """The record's fields, in __init__ order."""
    cls: Any = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    try:
        return tuple(cls.__record_fields__.values())
    except AttributeError:
        raise TypeError("fields() takes a record class or instance") from None


def replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of record obj with `changes`; made by __init__, so __post_init__ runs."""
    try:
        names = type(obj).__record_fields__  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError("replace() takes a record instance") from None
    for name in names:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return type(obj)(**changes)


def asdict(obj: Any) -> dict[str, Any]:
    """The record's fields as a dict, records inside (also in lists, tuples and dicts)
    turned into dicts too; other values deep-copied, as dataclasses.asdict does."""
    if isinstance(obj, type) or not hasattr(type(obj), "__record_fields__"):
        raise TypeError("asdict() takes a record instance")
    out: dict[str, Any] = _plain(obj)
    return out


def _plain(obj: Any) -> Any:
    cls = type(obj)
    names = getattr(cls, "__record_fields__", None)
    if names is not None and not isinstance(obj, type):
        return {name: _plain(getattr(obj, name)) for name in names}
    if cls in _ATOMS:
        return obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):    # a namedtuple
        return cls(*[_plain(v) for v in obj])
    if isinstance(obj, list | tuple):
        return cls(_plain(v) for v in obj)
    if isinstance(obj, dict):
        items = [(_plain(k), _plain(v)) for k, v in obj.items()]
        if hasattr(obj, "default_factory"):                   # a defaultdict
            return cls(obj.default_factory, items)
        return cls(items)
    import copy
    return copy.deepcopy(obj)


_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


# -- building the class ---------------------------------------------------------------


def _is_classvar(ann: Any) -> bool:
    if isinstance(ann, str):
        if "ClassVar" not in ann:
            return False
        head = ann.split("[", 1)[0].strip()
        return head.rsplit(".", 1)[-1] == "ClassVar"
    return ann is typing.ClassVar or getattr(ann, "__origin__", None) is typing.ClassVar


def _build(cls: type[_T], frozen: bool) -> type[_T]:
    own = cls.__dict__
    flds: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited = base.__dict__.get("__record_fields__")
        if inherited is not None:
            flds.update(inherited)
            if base.__dict__["__record_frozen__"] != frozen:
                raise TypeError(f"{cls.__name__}: a frozen record cannot inherit from a "
                                "non-frozen one, nor the other way round")
    for name, ann in own.get("__annotations__", {}).items():
        if _is_classvar(ann):
            continue
        value = own.get(name, MISSING)
        if isinstance(value, Field):
            f = value
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)   # as dataclasses: the default stays there
        else:
            f = Field(value)
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"{cls.__name__}.{name}: mutable default "
                             f"{type(f.default).__name__} is not allowed: use default_factory")
        f.name = name
        flds[name] = f
    seen_default = ""
    for f in flds.values():
        if f.default is not MISSING or f.default_factory is not None:
            seen_default = f.name
        elif seen_default:
            raise TypeError(f"{cls.__name__}: non-default argument {f.name!r} follows "
                            f"default argument {seen_default!r}")
    names = tuple(flds)
    values: Callable[[Any], tuple[Any, ...]]
    if len(names) > 1:
        values = attrgetter(*names)
    elif names:
        one = attrgetter(names[0])
        values = lambda obj: (one(obj),)  # noqa: E731
    else:
        values = lambda obj: ()  # noqa: E731

    c: Any = cls    # (the attributes set below are new to the type checker)
    for attr, value in (("__record_fields__", flds), ("__record_frozen__", frozen),
                        ("__match_args__", names)):
        setattr(c, attr, value)
    _add(cls, "__init__", _make_init(cls, list(flds.values()), hasattr(cls, "__post_init__"),
                                     frozen))
    _add(cls, "__repr__", _make_repr(names))
    _add(cls, "__eq__", _make_eq(values))
    hash_own = own.get("__hash__", MISSING)
    explicit_hash = hash_own is not MISSING and not (hash_own is None and "__eq__" in own)
    if not explicit_hash:
        c.__hash__ = _make_hash(values) if frozen else None
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in own:
                raise TypeError(f"{cls.__name__}: a frozen record cannot define {name}")
        setter, deleter = _make_frozen(cls, frozenset(names))
        c.__setattr__, c.__delattr__ = setter, deleter
    return cls


def _add(cls: type, name: str, fn: Any) -> None:
    """Set method `name` unless the class body defined its own."""
    if name not in cls.__dict__:
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, fn)


def _make_init(cls: type, flds: list[Field], post_init: bool,
               frozen: bool) -> Callable[..., None]:
    specs = [(f.name, f.default, f.default_factory) for f in flds]
    names = tuple(f.name for f in flds)
    n = len(names)
    # After k positional arguments: the fields left, and the keywords that may name them
    # (made on the first call with k positional arguments, not for every k up front).
    rests: list[tuple[tuple[str, Any, Any], ...] | None] = [None] * (n + 1)
    allowed: list[frozenset[str]] = [frozenset()] * (n + 1)
    missing = MISSING
    # Attribute by attribute, not through self.__dict__: reading __dict__ would make
    # CPython give up the instance's inline attribute values, and every later read of a
    # field would be ~3x slower.
    put = object.__setattr__ if frozen else setattr

    def __init__(self: Any, *args: Any, **kw: Any) -> None:
        k = len(args)
        if k > n:
            raise _call_error(cls, flds, args, kw)
        rest = rests[k]
        if rest is None:
            allowed[k] = frozenset(names[k:])
            rest = rests[k] = tuple(specs[k:])
        if kw and not kw.keys() <= allowed[k]:
            raise _call_error(cls, flds, args, kw)
        i = 0
        for value in args:
            put(self, names[i], value)
            i += 1
        for name, default, factory in rest:
            if name in kw:
                put(self, name, kw[name])
            elif default is not missing:
                put(self, name, default)
            elif factory is not None:
                put(self, name, factory())
            else:
                raise _call_error(cls, flds, args, kw)
        if post_init:
            self.__post_init__()

    return __init__


def _call_error(cls: type, flds: list[Field], args: tuple[Any, ...],
                kw: dict[str, Any]) -> TypeError:
    """What was wrong with a call to cls's __init__, in dataclasses' (Python's) words."""
    fn = f"{cls.__qualname__}.__init__()"
    names = [f.name for f in flds]
    if len(args) > len(names):
        required = sum(f.default is MISSING and f.default_factory is None for f in flds)
        takes = (f"{len(names) + 1}" if required == len(names)
                 else f"from {required + 1} to {len(names) + 1}")
        return TypeError(f"{fn} takes {takes} positional arguments but "
                         f"{len(args) + 1} were given")
    for key in kw:
        if key not in names:
            return TypeError(f"{fn} got an unexpected keyword argument {key!r}")
        if names.index(key) < len(args):
            return TypeError(f"{fn} got multiple values for argument {key!r}")
    lacking = [f"{f.name!r}" for f in flds[len(args):] if f.name not in kw
               and f.default is MISSING and f.default_factory is None]
    listed = (lacking[0] if len(lacking) == 1 else " and ".join(lacking) if len(lacking) == 2
              else ", ".join(lacking[:-1]) + ", and " + lacking[-1])
    plural = "argument" if len(lacking) == 1 else "arguments"
    return TypeError(f"{fn} missing {len(lacking)} required positional {plural}: {listed}")


_repr_running: set[tuple[int, int]] = set()


def _make_repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        key = (id(self), get_ident())
        if key in _repr_running:
            return "..."
        _repr_running.add(key)
        try:
            inner = ", ".join([f"{name}={getattr(self, name)!r}" for name in names])
        finally:
            _repr_running.discard(key)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _make_eq(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _make_hash(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _make_frozen(cls: Any, names: frozenset[str]) -> tuple[Callable[..., None],
                                                              Callable[..., None]]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise FrozenRecordError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenRecordError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __setattr__, __delattr__

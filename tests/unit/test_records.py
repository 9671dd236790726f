"""kvmnet.records: dataclass semantics without exec (the records replaced @dataclass)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from collections import defaultdict, namedtuple
from typing import Any, ClassVar

import pytest

from kvmnet.records import (
    FrozenRecordError,
    asdict,
    field,
    fields,
    is_record,
    record,
    replace,
)


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@record(frozen=True)
class Box:
    name: str
    corners: list[Point] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    label: str = field(default="box")
    KIND: ClassVar[str] = "box"


@record
class Counter:
    name: str
    hits: list[int] = field(default_factory=list)
    total: int = 0

    def __post_init__(self) -> None:
        self.total = sum(self.hits)


@record(frozen=True)
class Point3(Point):
    z: int = 0


@record(frozen=True)
class Redefined(Point):
    y: int = 5          # stays where Point put it
    w: str = ""


Pair = namedtuple("Pair", "a b")


# -- fields and __init__ --------------------------------------------------------------


def test_fields_in_body_order_inherited_first() -> None:
    assert [f.name for f in fields(Point3)] == ["x", "y", "tags", "z"]
    assert [f.name for f in fields(Redefined)] == ["x", "y", "tags", "w"]
    assert Redefined(1) == Redefined(1, 5, (), "")
    assert [f.name for f in fields(Point3(1))] == ["x", "y", "tags", "z"]
    assert Point3(1, 2, ("t",), 3).z == 3
    assert Point3.__match_args__ == ("x", "y", "tags", "z")


def test_classvar_is_not_a_field() -> None:
    assert [f.name for f in fields(Box)] == ["name", "corners", "meta", "label"]
    assert Box.KIND == "box"
    with pytest.raises(TypeError, match="unexpected keyword argument 'KIND'"):
        Box("b", KIND="x")  # type: ignore[call-arg]


def test_positional_keyword_and_defaults() -> None:
    assert Point(1) == Point(x=1) == Point(1, 0) == Point(1, y=0, tags=())
    p = Point(y=2, x=1)
    assert (p.x, p.y, p.tags) == (1, 2, ())
    assert Box("b").label == "box"
    assert Point.y == 0                  # the default stays on the class, as dataclasses'
    assert not hasattr(Box, "corners")   # a factory field has none
    assert list(vars(Point(1, 2)).keys()) == ["x", "y", "tags"]


def test_factories_are_not_shared() -> None:
    a, b = Box("a"), Box("b")
    a.corners.append(Point(1))
    a.meta["k"] = 1
    assert b.corners == [] and b.meta == {}
    assert a.corners is not b.corners


def test_mutable_default_refused() -> None:
    with pytest.raises(ValueError, match="mutable default"):
        @record
        class Bad:
            xs: list[int] = []  # noqa: RUF012


def test_non_default_after_default_refused() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default"):
        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Point(), "missing 1 required positional argument: 'x'"),  # type: ignore[call-arg]
    (lambda: Point(1, 2, (), 4), "takes from 2 to 4 positional arguments but 5 were given"),  # type: ignore[call-arg]
    (lambda: Point(1, z=3), "got an unexpected keyword argument 'z'"),  # type: ignore[call-arg]
    (lambda: Point(1, x=2), "got multiple values for argument 'x'"),  # type: ignore[misc]
    (lambda: Point(y=1), "missing 1 required positional argument: 'x'"),  # type: ignore[call-arg]
])
def test_bad_calls_raise_typeerror(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


@dataclasses.dataclass(frozen=True)
class DPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@record(frozen=True)
class Three:
    a: int
    b: int
    c: int


@dataclasses.dataclass(frozen=True)
class DThree:
    a: int
    b: int
    c: int


@pytest.mark.parametrize(("args", "kw"), [
    ((), {}), ((1,), {}), ((1, 2, 3, 4), {}), ((1,), {"a": 1}), ((), {"d": 1}),
    ((1,), {"c": 3}),
])
def test_typeerror_messages_are_dataclasses(args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as ours:
        Three(*args, **kw)
    with pytest.raises(TypeError) as theirs:
        DThree(*args, **kw)
    assert str(ours.value) == str(theirs.value).replace("DThree", "Three")


def test_post_init_runs_after_init() -> None:
    c = Counter("c", [1, 2, 3])
    assert c.total == 6


# -- frozen, eq, hash, repr -------------------------------------------------------------


def test_frozen_refuses_assignment_and_deletion() -> None:
    p = Point(1)
    with pytest.raises(FrozenRecordError, match="cannot assign to field 'x'"):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.new = 1  # type: ignore[attr-defined]
    with pytest.raises(FrozenRecordError):
        del p.x
    assert p.x == 1


def test_mutable_record_assigns() -> None:
    c = Counter("c")
    c.total = 5
    assert c.total == 5


def test_eq_by_class_and_fields() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Point3(1)               # another class: not equal
    assert Point(1).__eq__(DPoint(1)) is NotImplemented
    assert Point(1) != (1, 0, ())  # type: ignore[comparison-overlap]
    assert Counter("a", [1]) == Counter("a", [1])


def test_hash_frozen_by_fields_mutable_unhashable() -> None:
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(2)}) == 2
    assert Counter.__hash__ is None
    with pytest.raises(TypeError, match="unhashable"):
        hash(Counter("c"))
    with pytest.raises(TypeError, match="unhashable"):
        hash(Box("b"))          # a list field, as a frozen dataclass's


def test_own_methods_are_kept() -> None:
    @record(frozen=True)
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __hash__(self) -> int:
            return 7

    assert repr(Named("n")) == "<n>"
    assert hash(Named("n")) == 7


def test_repr_as_dataclasses() -> None:
    assert repr(Point(1, 2, ("a",))) == repr(DPoint(1, 2, ("a",))).replace("DPoint", "Point")
    c = Counter("c")
    c.hits.append(c)  # type: ignore[arg-type]
    assert repr(c) == "Counter(name='c', hits=[...], total=0)"   # no endless recursion


# -- replace, asdict ------------------------------------------------------------------------


def test_replace_goes_through_init() -> None:
    p = Point(1, 2, ("a",))
    q = replace(p, y=5)
    assert q == Point(1, 5, ("a",)) and p.y == 2
    c = replace(Counter("c", [1]), hits=[4, 5])
    assert c.total == 9                        # __post_init__ ran
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        replace(p, nope=1)
    with pytest.raises(TypeError):
        replace(DPoint(1), x=2)


def test_asdict_recurses() -> None:
    b = Box("b", [Point(1, 2, ("t",))], {"p": Point(3), "l": [Point(4)], "n": Pair(Point(5), 1)})
    d = asdict(b)
    assert d == {
        "name": "b",
        "corners": [{"x": 1, "y": 2, "tags": ("t",)}],
        "meta": {"p": {"x": 3, "y": 0, "tags": ()}, "l": [{"x": 4, "y": 0, "tags": ()}],
                 "n": Pair({"x": 5, "y": 0, "tags": ()}, 1)},
        "label": "box",
    }
    assert type(d["meta"]["n"]) is Pair
    assert d["corners"] is not b.corners
    dd = defaultdict(list, {"k": [Point(1)]})
    out = asdict(Box("b", meta=dd))["meta"]
    assert type(out) is defaultdict and out == {"k": [{"x": 1, "y": 0, "tags": ()}]}
    assert asdict(Point(1)) == dataclasses.asdict(DPoint(1))
    with pytest.raises(TypeError):
        asdict(Point)
    with pytest.raises(TypeError):
        asdict({"x": 1})


def test_is_record() -> None:
    assert is_record(Point) and is_record(Point(1))
    assert not is_record(DPoint) and not is_record(1)


# -- copies and pickle ---------------------------------------------------------------------


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(proto: int) -> None:
    b = Box("b", [Point(1, 2, ("t",))], {"k": 1})
    back = pickle.loads(pickle.dumps(b, proto))
    assert back == b and back is not b
    assert back.corners is not b.corners
    with pytest.raises(FrozenRecordError):
        back.name = "x"
    assert pickle.loads(pickle.dumps(Counter("c", [2]), proto)).total == 2


def test_copy_and_deepcopy() -> None:
    b = Box("b", [Point(1)])
    shallow, deep = copy.copy(b), copy.deepcopy(b)
    assert shallow == b == deep
    assert shallow.corners is b.corners
    assert deep.corners is not b.corners and deep.corners[0] == Point(1)
    assert hash(copy.deepcopy(Point(1, 2))) == hash(Point(1, 2))


# -- subclasses and import cost ---------------------------------------------------------------


def test_frozen_mixing_refused() -> None:
    with pytest.raises(TypeError, match="frozen"):
        @record
        class Loose(Point):  # type: ignore[misc]
            pass


def test_plain_subclass_of_frozen_record_may_add_attributes() -> None:
    class Extra(Point):
        pass

    e = Extra(1)
    e.note = "n"  # type: ignore[attr-defined]
    with pytest.raises(FrozenRecordError):
        e.x = 2  # type: ignore[misc]
    assert e.note == "n"  # type: ignore[attr-defined]


def test_records_import_neither_dataclasses_nor_inspect() -> None:
    code = ("import sys, kvmnet.records; "
            "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

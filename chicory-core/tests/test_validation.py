"""Arguments are checked at delay() with the parameter named, and structured on the worker."""

from __future__ import annotations

import dataclasses

import attrs
import pytest

from chicory import ArgumentValidationError, Chicory, TaskContext, ValidationMode
from chicory.errors import ResultValidationError, TaskRegistrationError
from chicory.validation import Signature, make_value_converter


@attrs.frozen
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Order:
    id: str
    lines: list[Point]


def sig(fn: object) -> Signature:
    return Signature("t", fn, make_value_converter())  # type: ignore[arg-type]


def test_missing_and_unexpected_arguments_name_the_parameter() -> None:
    def f(a: int, b: str) -> None: ...

    with pytest.raises(ArgumentValidationError, match="'b'") as info:
        sig(f).bind([1], {}, ValidationMode.NONE)
    assert info.value.parameter == "b"
    with pytest.raises(ArgumentValidationError, match="'zz'"):
        sig(f).bind([1, "x"], {"zz": 1}, ValidationMode.NONE)


def test_wrong_type_names_the_parameter_in_inputs_mode() -> None:
    def f(count: int, label: str) -> None: ...

    with pytest.raises(ArgumentValidationError, match="parameter 'count'"):
        sig(f).bind(["3"], {"label": "x"}, ValidationMode.INPUTS)
    with pytest.raises(ArgumentValidationError, match="parameter 'count'"):
        sig(f).bind([True], {"label": "x"}, ValidationMode.INPUTS)
    # NONE mode only binds
    assert sig(f).bind(["3"], {"label": "x"}, ValidationMode.NONE) == (["3", "x"], {})


@pytest.mark.parametrize("mode", list(ValidationMode))
def test_exactly_typed_scalars_pass_unchanged_and_anything_else_is_still_checked(
    mode: ValidationMode,
) -> None:
    def f(count: int, label: str) -> None: ...

    s = sig(f)
    assert s.bind((3, "x"), {}, mode) == ([3, "x"], {})
    assert s.load([3, "x"], {}, mode) == ([3, "x"], {})
    assert s.bind((3,), {"label": "x"}, mode) == ([3, "x"], {})
    with pytest.raises(ArgumentValidationError, match="'label'"):
        s.bind((3,), {}, mode)
    with pytest.raises(ArgumentValidationError):
        s.bind((3, "x", 4), {}, mode)
    if mode.checks_inputs:  # a bool is an int subclass, not exactly an int
        with pytest.raises(ArgumentValidationError, match="parameter 'count'"):
            s.bind((True, "x"), {}, mode)
        with pytest.raises(ArgumentValidationError, match="parameter 'count'"):
            s.load(["3", "x"], {}, mode)


def _f1(a: int) -> None: ...
def _f2(a: int, b: str) -> None: ...
def _f3(a: int, b: str, c: float) -> None: ...
def _f4(a: int, b: str, c: float, d: bool) -> None: ...


@pytest.mark.parametrize("fn", [_f1, _f2, _f3, _f4])
def test_the_exact_type_test_checks_every_position_whatever_the_arity(fn: object) -> None:
    good = [3, "x", 1.5, True][: fn.__code__.co_argcount]  # type: ignore[attr-defined]
    s = sig(fn)
    assert s.bind(tuple(good), {}, ValidationMode.INPUTS) == (good, {})
    assert s.load(list(good), {}, ValidationMode.INPUTS) == (good, {})
    for position in range(len(good)):
        wrong = list(good)
        wrong[position] = [wrong[position]]  # a list is no parameter's type here
        with pytest.raises(ArgumentValidationError) as info:
            s.bind(tuple(wrong), {}, ValidationMode.INPUTS)
        assert info.value.parameter == "abcd"[position]
        with pytest.raises(ArgumentValidationError):
            s.load(wrong, {}, ValidationMode.INPUTS)
    with pytest.raises(ArgumentValidationError):
        s.bind((*good, 0), {}, ValidationMode.INPUTS)
    with pytest.raises(ArgumentValidationError):
        s.load(good[:-1], {}, ValidationMode.INPUTS)


def test_a_task_without_parameters_takes_no_arguments() -> None:
    def f() -> None: ...

    assert sig(f).bind((), {}, ValidationMode.STRICT) == ([], {})
    assert sig(f).load([], {}, ValidationMode.STRICT) == ([], {})
    with pytest.raises(ArgumentValidationError):
        sig(f).bind((1,), {}, ValidationMode.STRICT)


def test_attrs_and_dataclass_values_travel_as_json_and_arrive_as_classes() -> None:
    def f(p: Point, order: Order, *rest: Point, **extra: Point) -> None: ...

    s = sig(f)
    order = Order("o1", [Point(1, 2)])
    args, kwargs = s.bind(
        [Point(1, 2), order, Point(5, 6)], {"z": Point(7, 8)}, ValidationMode.INPUTS
    )
    assert args == [{"x": 1, "y": 2}, {"id": "o1", "lines": [{"x": 1, "y": 2}]}, {"x": 5, "y": 6}]
    assert kwargs == {"z": {"x": 7, "y": 8}}
    loaded_args, loaded_kwargs = s.load(args, kwargs, ValidationMode.INPUTS)
    assert loaded_args == [Point(1, 2), order, Point(5, 6)]
    assert loaded_kwargs == {"z": Point(7, 8)}


def test_bad_json_from_the_wire_is_rejected_with_the_parameter() -> None:
    def f(p: Point) -> None: ...

    with pytest.raises(ArgumentValidationError, match="parameter 'p'"):
        sig(f).load([{"x": "one", "y": 2}], {}, ValidationMode.INPUTS)


def test_context_parameter_is_not_part_of_the_call() -> None:
    def f(ctx: TaskContext, n: int) -> int:
        return n

    s = sig(f)
    assert s.wants_context
    assert s.bind([1], {}, ValidationMode.INPUTS) == ([1], {})


def test_outputs_mode_checks_return_values() -> None:
    def f() -> Point:
        return Point(1, 2)

    s = sig(f)
    assert s.dump_result(Point(1, 2), ValidationMode.OUTPUTS) == {"x": 1, "y": 2}
    with pytest.raises(ResultValidationError, match="return annotation"):
        s.dump_result("nope", ValidationMode.STRICT)
    assert s.dump_result("nope", ValidationMode.INPUTS) == "nope"
    assert s.load_result({"x": 1, "y": 2}) == Point(1, 2)


def test_stored_scalar_results_are_read_as_the_return_annotation_says() -> None:
    def to_int() -> int:
        return 0

    def to_float() -> float:
        return 0.0

    def to_bool() -> bool:
        return False

    ints, floats, bools = sig(to_int), sig(to_float), sig(to_bool)
    assert ints.load_result(3) == 3
    assert type(floats.load_result(3)) is float
    assert floats.load_result(2.5) == 2.5
    assert bools.load_result(True) is True
    for wrong, s in (("3", ints), (True, ints), ("x", floats), (1, bools)):
        with pytest.raises(ResultValidationError, match="return annotation"):
            s.load_result(wrong)


def test_task_delay_rejects_bad_arguments_before_publishing() -> None:
    app = Chicory(broker="memory://")

    @app.task(name="t.typed")
    async def typed(n: int) -> int:
        return n

    with pytest.raises(ArgumentValidationError, match="parameter 'n'"):
        typed.message(["x"])


def test_unresolvable_annotations_fail_at_registration() -> None:
    app = Chicory(broker="memory://")

    def f(x: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TaskRegistrationError, match="type hints"):
        app.task(f)


def test_duplicate_task_names_are_rejected() -> None:
    app = Chicory(broker="memory://")
    app.task(name="t.same")(lambda: None)
    with pytest.raises(TaskRegistrationError, match="already registered"):
        app.task(name="t.same")(lambda: None)

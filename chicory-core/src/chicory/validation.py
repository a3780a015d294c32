"""Task signatures, inspected once at registration, and argument/result checks via cattrs.

At ``delay()`` time arguments are bound to the signature (always) and, when the task's
:class:`~chicory.modes.ValidationMode` checks inputs, structured into their annotated
types, so a bad call fails in the caller with the parameter named. Values are then
unstructured to JSON (an attrs instance or dataclass becomes an object). On the worker the
JSON is structured back, so a parameter annotated with an attrs class arrives as one.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import cattrs

from chicory.context import TaskContext
from chicory.envelope import explain
from chicory.errors import ArgumentValidationError, ResultValidationError, TaskRegistrationError
from chicory.modes import ValidationMode

__all__ = ["Signature", "make_value_converter"]

_PLAIN: Final = (str, int, float, bool, type(None))
_SCALARS: Final = (str, int, float, bool)
_NO_CHECK: Final = (Any, object, inspect.Parameter.empty)
_POSITIONAL_ONLY: Final = inspect.Parameter.POSITIONAL_ONLY
_POSITIONAL_OR_KEYWORD: Final = inspect.Parameter.POSITIONAL_OR_KEYWORD


def make_value_converter() -> cattrs.Converter:
    """Build the converter for task arguments and results: strict on primitives."""
    converter = cattrs.Converter()
    converter.register_structure_hook_func(lambda t: t is object, lambda value, _t: value)

    def strict(expected: type) -> Callable[[Any, Any], Any]:
        def hook(value: Any, _t: Any) -> Any:
            if type(value) is bool and expected is not bool:
                raise TypeError(f"expected {expected.__name__}, got bool")
            if expected is float and type(value) is int:
                return float(value)
            if not isinstance(value, expected):
                raise TypeError(f"expected {expected.__name__}, got {type(value).__name__}")
            return value

        return hook

    for primitive in (int, float, str, bool):
        converter.register_structure_hook(primitive, strict(primitive))
    return converter


def _exact_test(types: tuple[type, ...]) -> Callable[[Sequence[Any]], bool]:
    """A test that ``args`` holds one value of exactly each of ``types``, in order.

    Up to three parameters, the test indexes the arguments directly: no iterator and no
    tuple built per call. The general form (``tuple(map(type, args)) == types``) costs
    ~3x as much, and runs twice per task (``bind`` in the producer, ``load`` in the worker).
    """
    if not types:
        return lambda args: len(args) == 0
    if len(types) == 1:
        (a,) = types
        return lambda args: len(args) == 1 and type(args[0]) is a
    if len(types) == 2:
        a, b = types
        return lambda args: len(args) == 2 and type(args[0]) is a and type(args[1]) is b
    if len(types) == 3:
        a, b, c = types
        return lambda args: (
            len(args) == 3 and type(args[0]) is a and type(args[1]) is b and type(args[2]) is c
        )
    return lambda args: tuple(map(type, args)) == types


def _needs_unstructure(value: Any) -> bool:
    return not isinstance(value, _PLAIN)


class Signature:
    """The call shape of one task function, computed once.

    Args:
        task_name: For error messages.
        func: The task function.
        converter: The value converter (see :func:`make_value_converter`).

    Raises:
        TaskRegistrationError: the type hints cannot be resolved.
    """

    def __init__(self, task_name: str, func: Callable[..., Any], converter: cattrs.Converter):
        self.task_name = task_name
        self._converter = converter
        signature = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception as exc:
            raise TaskRegistrationError(
                f"task {task_name!r}: cannot resolve type hints ({exc}); import the names used "
                "in annotations at module level"
            ) from exc
        params = list(signature.parameters.values())
        self.wants_context = bool(params) and hints.get(params[0].name) is TaskContext
        if self.wants_context:
            params = params[1:]
        self._signature = signature.replace(parameters=params)
        self._hints: dict[str, Any] = {p.name: hints.get(p.name, Any) for p in params}
        self._kinds = {p.name: p.kind for p in params}
        self.return_hint: Any = hints.get("return", Any)
        self._checked = {n: h for n, h in self._hints.items() if h not in _NO_CHECK}
        self._hooks = {n: (converter.get_structure_hook(h), h) for n, h in self._checked.items()}
        # Scalars of exactly the annotated type need no converter round trip.
        self._exact = {n: h for n, h in self._checked.items() if h in _SCALARS}
        plain = all(p.kind in (_POSITIONAL_ONLY, _POSITIONAL_OR_KEYWORD) for p in params)
        # The fast path: a call passing exactly every parameter positionally needs no binding.
        self._names: tuple[str, ...] | None = tuple(p.name for p in params) if plain else None
        # The fastest: ... and each argument is a JSON scalar of exactly its annotated type,
        # so there is nothing to check or convert. None unless every parameter qualifies.
        exact = tuple(h for p in params if (h := self._exact.get(p.name)) is not None)
        self._is_exact: Callable[[Sequence[Any]], bool] | None = (
            _exact_test(exact) if plain and len(exact) == len(params) else None
        )

    def _is_plain_call(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
        return self._names is not None and not kwargs and len(args) == len(self._names)

    def bind(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], mode: ValidationMode
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check a call on the producer side and return JSON-ready ``(args, kwargs)``.

        Raises:
            ArgumentValidationError: the call does not fit the signature or its types.
        """
        is_exact = self._is_exact
        if is_exact is not None and not kwargs and is_exact(args):
            return list(args), {}
        if self._is_plain_call(args, kwargs):
            assert self._names is not None
            if mode.checks_inputs and self._hooks:
                for name, value in zip(self._names, args, strict=True):
                    self._check(name, value)
            return [self._to_json(v) for v in args], {}
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentValidationError(self.task_name, str(exc), _param_in(str(exc))) from exc
        if mode.checks_inputs:
            for name, value in bound.arguments.items():
                self._check(name, value)
        out_args = [self._to_json(v) for v in bound.args]
        out_kwargs = {k: self._to_json(v) for k, v in bound.kwargs.items()}
        return out_args, out_kwargs

    def load(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], mode: ValidationMode
    ) -> tuple[list[Any], dict[str, Any]]:
        """Turn JSON arguments from the wire into the values the function expects.

        Raises:
            ArgumentValidationError: the arguments do not fit (never retried: dead-lettered).
        """
        is_exact = self._is_exact
        if is_exact is not None and not kwargs and is_exact(args):
            return list(args), {}
        if self._is_plain_call(args, kwargs):
            assert self._names is not None
            loaded = list(args)
            if mode is ValidationMode.NONE or not self._hooks:
                return loaded, {}
            for index, name in enumerate(self._names):
                checker = self._hooks.get(name)
                if checker is not None:
                    hook, hint = checker
                    try:
                        loaded[index] = hook(loaded[index], hint)
                    except Exception as exc:
                        raise ArgumentValidationError(self.task_name, explain(exc), name) from exc
            return loaded, {}
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentValidationError(self.task_name, str(exc), _param_in(str(exc))) from exc
        if mode is ValidationMode.NONE or not self._checked:
            return list(bound.args), dict(bound.kwargs)
        for name, value in bound.arguments.items():
            hint = self._checked.get(name)
            if hint is None:
                continue
            kind = self._kinds[name]
            try:
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    bound.arguments[name] = tuple(self._converter.structure(v, hint) for v in value)
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    bound.arguments[name] = {
                        k: self._converter.structure(v, hint) for k, v in value.items()
                    }
                else:
                    bound.arguments[name] = self._converter.structure(value, hint)
            except Exception as exc:
                raise ArgumentValidationError(self.task_name, explain(exc), name) from exc
        return list(bound.args), dict(bound.kwargs)

    def dump_result(self, value: Any, mode: ValidationMode) -> Any:
        """Check (if asked) and unstructure a return value for the result backend.

        Raises:
            ResultValidationError: the value does not match the return annotation.
        """
        if mode.checks_outputs and self.return_hint not in _NO_CHECK:
            try:
                self._converter.structure(self._to_json(value), self.return_hint)
            except Exception as exc:
                raise ResultValidationError(
                    f"task {self.task_name!r} returned a value that does not match its return "
                    f"annotation: {explain(exc)}"
                ) from exc
        return self._to_json(value)

    def load_result(self, value: Any) -> Any:
        """Structure a stored result into the return annotation (for ``AsyncResult.get``)."""
        hint = self.return_hint
        if type(value) is hint and hint in _SCALARS:  # exactly its type: nothing to convert
            return value
        if hint in _NO_CHECK or value is None:
            return value
        try:
            return self._converter.structure(value, self.return_hint)
        except Exception as exc:
            raise ResultValidationError(
                f"stored result of task {self.task_name!r} does not match its return "
                f"annotation: {explain(exc)}"
            ) from exc

    def _check(self, name: str, value: Any) -> None:
        if type(value) is self._exact.get(name):
            return
        checker = self._hooks.get(name)
        if checker is None:
            return
        hook, hint = checker
        kind = self._kinds[name]
        values: Sequence[Any]
        if kind is inspect.Parameter.VAR_POSITIONAL:
            values = value
        elif kind is inspect.Parameter.VAR_KEYWORD:
            values = list(value.values())
        else:
            values = (value,)
        for item in values:
            try:
                hook(self._to_json(item), hint)
            except Exception as exc:
                raise ArgumentValidationError(self.task_name, explain(exc), name) from exc

    def _to_json(self, value: Any) -> Any:
        if not _needs_unstructure(value):
            return value
        if attrs.has(type(value)) or dataclasses.is_dataclass(value):
            return self._converter.unstructure(value)
        if isinstance(value, list | tuple | dict | set | frozenset):
            return self._converter.unstructure(value)
        return value


def _param_in(message: str) -> str | None:
    """Pull a parameter name out of ``inspect``'s bind error text, if there is one."""
    for marker in ("argument '", "argument: '", "parameter '"):
        start = message.find(marker)
        if start >= 0:
            start += len(marker)
            end = message.find("'", start)
            if end > start:
                return message[start:end]
    return None

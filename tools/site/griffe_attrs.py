"""Griffe extension: the ``__init__`` signature of attrs classes, for the API reference.

Griffe reads source code without running it, and attrs writes ``__init__`` at import time,
so without help ``RetryPolicy``, ``Capabilities`` or ``BrokerHarness`` would be documented
as taking no arguments. For every class decorated with ``attrs.frozen``, ``attrs.define``
or ``attrs.mutable`` (with or without arguments), this adds the ``__init__`` attrs
generates: one parameter per annotated field in definition order, keyword-only when the
decorator or the field says ``kw_only=True``, with the field's default (``factory=f``
shows as ``f()``), minus fields with ``init=False``, and under the field's ``alias`` (or
its name without a leading underscore, as attrs does).
"""

from __future__ import annotations

from typing import Any

import griffe

__all__ = ["AttrsInit"]

DECORATORS = {"attrs.frozen", "attrs.define", "attrs.mutable", "attr.frozen", "attr.define"}


class AttrsInit(griffe.Extension):
    """Adds the attrs-generated ``__init__`` to attrs classes (see the module)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Add the signatures in a freshly loaded package."""
        _visit(pkg)


def _visit(obj: griffe.Module | griffe.Class) -> None:
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Class):
            if "__init__" not in member.members and _decorator(member) is not None:
                _add_init(member)
            _visit(member)
        elif isinstance(member, griffe.Module):
            _visit(member)


def _decorator(cls: griffe.Class) -> griffe.Expr | str | None:
    for decorator in cls.decorators:
        value = decorator.value
        target = value.function if isinstance(value, griffe.ExprCall) else value
        if isinstance(target, griffe.Expr) and target.canonical_path in DECORATORS:
            return value
    return None


def _arguments(value: griffe.Expr | str | None) -> dict[str, Any]:
    if not isinstance(value, griffe.ExprCall):
        return {}
    return {a.name: a.value for a in value.arguments if isinstance(a, griffe.ExprKeyword)}


def _add_init(cls: griffe.Class) -> None:
    class_kw_only = str(_arguments(_decorator(cls)).get("kw_only")) == "True"
    parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
    for member in cls.members.values():
        if not isinstance(member, griffe.Attribute) or member.annotation is None:
            continue
        if "class-attribute" in member.labels and "instance-attribute" not in member.labels:
            continue  # a ClassVar
        default: Any = member.value
        field: dict[str, Any] = {}
        if isinstance(member.value, griffe.ExprCall) and str(member.value.function) in {
            "attrs.field",
            "attr.ib",
            "attr.field",
        }:
            field = _arguments(member.value)
            default = field.get("default")
            if "factory" in field:
                default = griffe.ExprCall(function=field["factory"], arguments=[])
        if str(field.get("init")) == "False":
            continue
        kw_only = class_kw_only or str(field.get("kw_only")) == "True"
        name = str(field["alias"]).strip("'\"") if "alias" in field else member.name.lstrip("_")
        parameters.append(
            griffe.Parameter(
                name,
                annotation=member.annotation,
                kind=(
                    griffe.ParameterKind.keyword_only
                    if kw_only
                    else griffe.ParameterKind.positional_or_keyword
                ),
                default=default,
                docstring=member.docstring,
            )
        )
    init = griffe.Function(
        "__init__",
        lineno=cls.lineno,
        endlineno=cls.lineno,
        parent=cls,
        parameters=griffe.Parameters(*parameters),
        returns="None",
    )
    cls.set_member("__init__", init)

"""Griffe extension: Chicory's docstrings use Sphinx roles; the site renders them as links.

Docstrings say ``:class:`~chicory.broker.Delivery```, ``:meth:`Consumer.ack_many``` or
``:mod:`chicory.worker.ack```, which Markdown would show as raw text. This extension, run by
mkdocstrings while it loads the packages, rewrites every role:

* A target that names a Chicory object (resolved like Sphinx does: relative to the class,
  then the module, then the package, then as a full path) becomes a cross-reference to it.
  Objects documented on some page of the site are linked; the others (internal modules a
  docstring mentions in passing) are shown as code, without a link.
* A target under a Chicory package that names **nothing** is a mistake (a renamed or removed
  object, a typo): it is logged as a warning, which fails the strict build.
* Anything else (``:class:`anyio.Event```, ``:mod:`sqlite3```) is shown as code.

It also turns reStructuredText's ``::`` (a paragraph introducing a literal block) into ``:``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import griffe

__all__ = ["SphinxRoles"]

log = logging.getLogger("mkdocs.plugins.chicory.roles")

ROLE = re.compile(r":(?:py:)?(class|meth|mod|func|attr|exc|data|obj|const):`(~?)([^`]+)`")
LITERAL_INTRO = re.compile(r"(?<=\S)::$", re.MULTILINE)
OWN_PACKAGES = (
    "chicory",
    "chicory_memory",
    "chicory_redis",
    "chicory_example_plugin",
    "chicory_prometheus",
    "chicory_opentelemetry",
    "chicory_sentry",
    "chicory_sqlite",
)


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles in the docstrings of Chicory's packages (see the module)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite every docstring of a freshly loaded package."""
        if pkg.name not in OWN_PACKAGES:
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(obj, obj.docstring.value, loader)

    def _rewrite(self, obj: griffe.Object, text: str, loader: griffe.GriffeLoader) -> str:
        def replace(match: re.Match[str]) -> str:
            role, short, target = match.group(1), match.group(2), match.group(3)
            target = target.removesuffix("()")
            shown = target.rsplit(".", 1)[-1] if short else target
            if role in {"meth", "func"}:
                shown += "()"
            path = _resolve(obj, target, loader)
            if path is not None:
                # An optional cross-reference: linked when the object is documented on a
                # page, plain code otherwise; never a warning for an internal object.
                return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'
            if target.split(".", 1)[0] in OWN_PACKAGES:
                log.warning(
                    "%s: the docstring refers to %s, which does not exist", obj.path, target
                )
            return f"`{shown}`"

        return LITERAL_INTRO.sub(":", ROLE.sub(replace, text))


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_walk(member))
    return found


def _resolve(obj: griffe.Object, target: str, loader: griffe.GriffeLoader) -> str | None:
    """Return the full path of the object ``target`` names, seen from ``obj``, if any."""
    scopes: list[griffe.Object] = []
    scope: griffe.Object | None = obj
    while scope is not None:
        if scope.is_class or scope.is_module:
            scopes.append(scope)
        scope = scope.parent
    for candidate in [f"{s.path}.{target}" for s in scopes] + [target]:
        found = _lookup(candidate, loader)
        if found is not None:
            return found
    return None


def _lookup(path: str, loader: griffe.GriffeLoader) -> str | None:
    package = path.split(".", 1)[0]
    if package not in OWN_PACKAGES:
        return None
    collection = loader.modules_collection
    if package not in collection.members:
        try:
            loader.load(package)
        except ImportError:
            return None
    try:
        found = collection.get_member(path)
    except (KeyError, ValueError, griffe.AliasResolutionError):
        return _inherited(path, collection)
    return str(found.path) if found is not None else None


def _inherited(path: str, collection: griffe.ModulesCollection) -> str | None:
    """``path`` if it names a member a class inherits (shown on the class's page when its
    reference renders inherited members), else ``None``."""
    owner_path, _, name = path.rpartition(".")
    try:
        owner = collection.get_member(owner_path)
        if owner is not None and owner.is_alias:
            owner = owner.final_target  # a class re-exported by its package
        if owner is None or not owner.is_class:
            return None
        return path if name in owner.all_members else None
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None

"""Registries by name whose entries are imported only when used.

A registry is a plain dict ``{name: "package.module:Attribute"}`` kept beside the code it selects
(:data:`mattlib.models.mil.POOLINGS`, :data:`mattlib.models.encoders.ENCODERS`). Reading its names
imports nothing, so the params-file validator checks names without torch; :func:`lookup` imports
an entry when it is built. An entry may also be the object itself (handy in tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports", "lookup", "resolve"]


def resolve(target: Any) -> Any:
    """The object a ``"module:attribute"`` string names (a non-string is returned as it is).

    Raises
    ------
    ValueError
        The string is not of the form ``"module:attribute"``.
    ImportError, AttributeError
        The module or the attribute does not exist.
    """
    if not isinstance(target, str):
        return target
    module, sep, attribute = target.partition(":")
    if not (sep and module and attribute):
        raise ValueError(f"registry entry {target!r} is not of the form 'package.module:attribute'")
    obj = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def lookup(registry: Mapping[str, Any], name: str, what: str) -> Any:
    """``registry[name]``, resolved; an unknown name raises a ``ValueError`` listing the valid ones."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(registry)}")
    return resolve(registry[name])


def lazy_exports(namespace: dict[str, Any], exports: Mapping[str, str]) -> tuple[Callable, Callable]:
    """A package's PEP 562 ``__getattr__`` and ``__dir__`` for names defined in its submodules.

    ``exports`` maps a public name to ``"module:attribute"``; the first access imports it and
    caches it in ``namespace`` (the package's ``globals()``).
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        namespace[name] = value = resolve(exports[name])
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__

"""Name -> verifier class lookup: built-in registrations, import paths and entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, TypeVar

from .base import Verifier

ENTRY_POINT_GROUP = "rlvr.verifiers"

_REGISTRY: dict[str, type[Verifier]] = {}

# Built-ins registered by their module's @register_verifier but imported on first lookup (the module imports
# this one, so it cannot be imported here at load time).
_LAZY_BUILTINS = {"rubric": ".rubric", "code": ".code"}

V = TypeVar("V", bound=type[Verifier])


class UnknownVerifierError(KeyError):
    """Raised by :func:`get_verifier` for a name that resolves to nothing."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


def register_verifier(name: str) -> Callable[[V], V]:
    """Class decorator registering a :class:`Verifier` subclass under ``name``.

    Sets ``cls.name = name`` when the class does not define ``name`` itself.

    Raises:
        TypeError: the decorated object is not a ``Verifier`` subclass.
        ValueError: ``name`` is already taken by another class, or the class defines a different
            ``name``.
    """

    def decorate(cls: V) -> V:
        if not (isinstance(cls, type) and issubclass(cls, Verifier)):
            raise TypeError(f"@register_verifier({name!r}) needs a Verifier subclass, got {cls!r}")
        own = cls.__dict__.get("name")
        if own is None:
            cls.name = name
        elif own != name:
            raise ValueError(f"{cls.__qualname__}.name is {own!r} but it is registered as {name!r}")
        taken = _REGISTRY.get(name)
        if taken is not None and _qualified(taken) != _qualified(cls):
            raise ValueError(f"verifier name {name!r} is already registered to {_qualified(taken)}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_verifiers() -> list[str]:
    """Sorted names accepted by :func:`get_verifier`: registered ones and entry-point ones."""
    return sorted(set(_REGISTRY) | set(_LAZY_BUILTINS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get_verifier(spec: str, **kwargs) -> Verifier:
    """Instantiate a verifier from ``spec`` with ``kwargs`` passed to its constructor.

    ``spec`` is tried as, in order: a registered name (``"math"``); an import path
    ``"package.module:ClassName"``; the name of an entry point in the group ``rlvr.verifiers``
    (``[project.entry-points."rlvr.verifiers"] my_verifier = "my_pkg.mod:MyVerifier"``).

    Raises:
        UnknownVerifierError: (a ``KeyError``) nothing matches; the message lists the known names.
        ImportError: the module of an import path or entry point cannot be imported.
        TypeError: the object found is not a ``Verifier`` subclass.
    """
    if spec not in _REGISTRY and spec in _LAZY_BUILTINS:
        importlib.import_module(_LAZY_BUILTINS[spec], __package__)
    if spec in _REGISTRY:
        return _REGISTRY[spec](**kwargs)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        module = importlib.import_module(module_name)
        try:
            cls = getattr(module, attr)
        except AttributeError:
            raise UnknownVerifierError(f"module {module_name!r} has no attribute {attr!r}") from None
        return _instantiate(cls, spec, kwargs)
    matches = entry_points(group=ENTRY_POINT_GROUP, name=spec)
    if matches:
        ep = next(iter(matches))
        return _instantiate(ep.load(), f"entry point {spec!r} ({ep.value})", kwargs)
    raise UnknownVerifierError(
        f"unknown verifier {spec!r}; known names: {', '.join(list_verifiers()) or '(none)'}. "
        f"Pass 'package.module:ClassName' to load a Verifier subclass by import path, or "
        f"expose it under the entry-point group {ENTRY_POINT_GROUP!r}."
    )


def _instantiate(cls: object, origin: str, kwargs: dict) -> Verifier:
    if not (isinstance(cls, type) and issubclass(cls, Verifier)):
        raise TypeError(f"{origin} is {cls!r}, not a Verifier subclass")
    return cls(**kwargs)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


MODEL_RESOLVER_GROUP = "verifiers.model_resolvers"


def resolve_model_path(ref: str) -> str:
    """A judge's or tokenizer's model reference -> something `from_pretrained` loads offline.

    A package that knows more model references registers a resolver under the entry-point group
    ``verifiers.model_resolvers``; rlvr registers `rlvr.models.resolve_model` (aliases such as
    `smollm2-135m-instruct`, .gguf files converted once and cached), so this module never imports rlvr. Without a
    resolver (verifiers used on their own, e.g. in TRL) a local folder or a hub id is passed through as given; an
    alias then raises ValueError naming the fix."""
    for ep in sorted(entry_points(group=MODEL_RESOLVER_GROUP), key=lambda ep: ep.name):
        try:
            resolver = ep.load()
        except ImportError:  # its package is registered but cannot be imported here: as if it were absent
            continue
        return resolver(ref)
    from pathlib import Path

    if Path(ref).expanduser().exists() or "/" in ref:
        return str(Path(ref).expanduser()) if Path(ref).expanduser().exists() else ref
    raise ValueError(f"model '{ref}': not a local folder or hub id, and no model resolver is installed (rlvr "
                     f"resolves aliases and .gguf files); pass a Hugging Face folder")

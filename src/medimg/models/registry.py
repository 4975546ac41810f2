"""The model registry: builders registered by name with a decorator, listed and filtered, old names mapped.

A builder is a function ``builder(spec: NetworkSpec) -> nn.Module``. Registering it under an existing name is an
error; ``aliases`` are old names that still work but raise a :class:`DeprecationWarning` and build the model
registered under the new name. Nothing is found by scanning folders: importing :mod:`medimg.models` registers
the built-in models.

Example:
    >>> import medimg.models
    >>> "unet" in list_models()
    True
    >>> list_models("*unet*")[:2]
    ['attention_unet', 'deeplab_unet']
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import warnings
from typing import Callable, TypeVar

import torch

from medimg.core.errors import InvalidParameterError
from medimg.models.spec import NetworkSpec

__all__ = ["register_model", "build_network", "list_models", "resolve_model_name"]

logger = logging.getLogger(__name__)

Builder = Callable[[NetworkSpec], torch.nn.Module]
B = TypeVar("B", bound=Builder)

_BUILDERS: dict[str, Builder] = {}
_ALIASES: dict[str, str] = {}


def register_model(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[B], B]:
    """Decorator that registers ``builder(spec) -> nn.Module`` under ``name`` (and deprecated ``aliases``).

    Raises:
        InvalidParameterError: ``name`` or an alias is empty or already taken.
    """
    for key in (name, *aliases):
        if not isinstance(key, str) or not key:
            raise InvalidParameterError("model names must be non-empty strings", parameter="name", found=key)
        if key in _BUILDERS or key in _ALIASES:
            raise InvalidParameterError("model name already registered", parameter="name", found=key,
                                        fix="pick another name, or add the old name to aliases=")

    def decorator(builder: B) -> B:
        _BUILDERS[name] = builder
        for alias in aliases:
            _ALIASES[alias] = name
        return builder

    return decorator


def resolve_model_name(name: str) -> str:
    """The registered name for ``name``; an old alias warns (DeprecationWarning) and maps to its new name.

    Raises:
        InvalidParameterError: ``name`` is neither registered nor an alias.
    """
    if name in _BUILDERS:
        return name
    if name in _ALIASES:
        new = _ALIASES[name]
        warnings.warn(f"model name '{name}' is deprecated; use '{new}'", DeprecationWarning, stacklevel=3)
        return new
    raise InvalidParameterError("unknown model", parameter="name", expected=" | ".join(list_models()),
                                found=name, fix="use one of the names listed by medimg.models.list_models()")


def build_network(spec: NetworkSpec) -> torch.nn.Module:
    """Build the network described by ``spec`` (fresh weights, training mode, float32, on the CPU).

    The module keeps the spec (with the registered name) in its ``spec`` attribute, so it can be saved beside
    the weights.

    Raises:
        InvalidParameterError: ``spec`` is not a NetworkSpec, its name is unknown, or the model does not support
            it (e.g. ``vnet`` with ``dims=2``).

    Example:
        >>> net = build_network(NetworkSpec(dims=2, n_stages=3, base_channels=4))
        >>> net.eval()(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """
    if not isinstance(spec, NetworkSpec):
        raise InvalidParameterError("expected a NetworkSpec", parameter="spec", expected="NetworkSpec",
                                    found=type(spec).__name__, fix="use NetworkSpec.from_dict(d) for a dict")
    name = resolve_model_name(spec.name)
    if name != spec.name:
        spec = dataclasses.replace(spec, name=name)
    net = _BUILDERS[name](spec)
    logger.debug("built %s with %d parameters", name, sum(p.numel() for p in net.parameters()))
    return net


def list_models(pattern: str | None = None, *, include_aliases: bool = False) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style ``pattern`` (``"*unet*"``)."""
    names = set(_BUILDERS) | (set(_ALIASES) if include_aliases else set())
    if pattern is not None:
        names = set(fnmatch.filter(names, pattern))
    return sorted(names)

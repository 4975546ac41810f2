"""The model registries: builders registered by name with a decorator, listed and filtered, old names mapped.

Two registries share one implementation (:class:`Registry`): segmentation networks, built from a
:class:`~medimg.models.NetworkSpec` (:func:`register_model`, :func:`build_network`, :func:`list_models`), and
classifiers, built from a :class:`~medimg.models.ClassifierSpec` (:func:`register_classifier`,
:func:`build_classifier`, :func:`list_classifiers`).

A builder is a function ``builder(spec) -> nn.Module``. Registering it under an existing name is an error;
``aliases`` are old names that still work but raise a :class:`DeprecationWarning` and build the model registered
under the new name. Nothing is found by scanning folders: importing :mod:`medimg.models` registers the built-in
models.

Example:
    >>> import medimg.models
    >>> "unet" in list_models()
    True
    >>> list_models("*unet*")[:2]
    ['attention_unet', 'deeplab_unet']
    >>> list_classifiers("resnet*")
    ['resnet18', 'resnet18_25d', 'resnet18_acs', 'resnet34']
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import warnings
from typing import Any, Callable, Generic, TypeVar

import torch

from medimg.core.errors import InvalidParameterError
from medimg.models.classifier_spec import ClassifierSpec
from medimg.models.spec import NetworkSpec

__all__ = [
    "Registry", "register_model", "build_network", "list_models", "resolve_model_name",
    "register_classifier", "build_classifier", "list_classifiers",
]

logger = logging.getLogger(__name__)

S = TypeVar("S")
B = TypeVar("B", bound=Callable[..., torch.nn.Module])


class Registry(Generic[S]):
    """Builders ``builder(spec) -> nn.Module`` by name, for one spec type.

    Args:
        kind: what is registered, in messages ("model", "classifier").
        spec_type: the spec class :meth:`build` accepts.
        lister: the public function that lists the names, quoted in error messages.
    """

    def __init__(self, kind: str, spec_type: type[S], *, lister: str):
        self.kind = kind
        self.spec_type = spec_type
        self.lister = lister
        self.builders: dict[str, Callable[[S], torch.nn.Module]] = {}
        self.aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[B], B]:
        """Decorator that registers a builder under ``name`` (and deprecated ``aliases``).

        Raises:
            InvalidParameterError: ``name`` or an alias is empty or already taken.
        """
        for key in (name, *aliases):
            if not isinstance(key, str) or not key:
                raise InvalidParameterError(f"{self.kind} names must be non-empty strings", parameter="name",
                                            found=key)
            if key in self.builders or key in self.aliases:
                raise InvalidParameterError(f"{self.kind} name already registered", parameter="name", found=key,
                                            fix="pick another name, or add the old name to aliases=")

        def decorator(builder: B) -> B:
            self.builders[name] = builder
            for alias in aliases:
                self.aliases[alias] = name
            return builder

        return decorator

    def resolve(self, name: str, *, stacklevel: int = 3) -> str:
        """The registered name for ``name``; an old alias warns (DeprecationWarning) and maps to its new name.

        Raises:
            InvalidParameterError: ``name`` is neither registered nor an alias.
        """
        if name in self.builders:
            return name
        if name in self.aliases:
            new = self.aliases[name]
            warnings.warn(f"{self.kind} name '{name}' is deprecated; use '{new}'", DeprecationWarning,
                          stacklevel=stacklevel)
            return new
        raise InvalidParameterError(f"unknown {self.kind}", parameter="name", expected=" | ".join(self.names()),
                                    found=name, fix=f"use one of the names listed by {self.lister}")

    def build(self, spec: Any) -> torch.nn.Module:
        """Check the spec type, resolve its name and call the builder (see :func:`build_network`)."""
        if not isinstance(spec, self.spec_type):
            kind = self.spec_type.__name__
            raise InvalidParameterError(f"expected a {kind}", parameter="spec", expected=kind,
                                        found=type(spec).__name__, fix=f"use {kind}.from_dict(d) for a dict")
        # stack: warn <- resolve <- build <- build_network/build_classifier <- the caller
        name = self.resolve(spec.name, stacklevel=4)
        if name != spec.name:
            spec = dataclasses.replace(spec, name=name)
        net = self.builders[name](spec)
        logger.debug("built %s %s with %d parameters", self.kind, name, sum(p.numel() for p in net.parameters()))
        return net

    def names(self, pattern: str | None = None, *, include_aliases: bool = False) -> list[str]:
        """Registered names, sorted, optionally filtered by a shell-style ``pattern``."""
        names = set(self.builders) | (set(self.aliases) if include_aliases else set())
        if pattern is not None:
            names = set(fnmatch.filter(names, pattern))
        return sorted(names)


_MODELS: Registry[NetworkSpec] = Registry("model", NetworkSpec, lister="medimg.models.list_models()")
_CLASSIFIERS: Registry[ClassifierSpec] = Registry("classifier", ClassifierSpec,
                                                  lister="medimg.models.list_classifiers()")
# the segmentation registry's tables under their historical names
_BUILDERS = _MODELS.builders
_ALIASES = _MODELS.aliases


# ---------------------------------------------------------------------------------------------- segmentation
def register_model(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[B], B]:
    """Decorator that registers ``builder(spec: NetworkSpec) -> nn.Module`` under ``name`` (and deprecated
    ``aliases``).

    Raises:
        InvalidParameterError: ``name`` or an alias is empty or already taken.
    """
    return _MODELS.register(name, aliases=aliases)


def resolve_model_name(name: str) -> str:
    """The registered name for ``name``; an old alias warns (DeprecationWarning) and maps to its new name.

    Raises:
        InvalidParameterError: ``name`` is neither registered nor an alias.
    """
    return _MODELS.resolve(name)


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
    return _MODELS.build(spec)


def list_models(pattern: str | None = None, *, include_aliases: bool = False) -> list[str]:
    """Registered segmentation model names, sorted, optionally filtered by a shell-style ``pattern``
    (``"*unet*"``)."""
    return _MODELS.names(pattern, include_aliases=include_aliases)


# ---------------------------------------------------------------------------------------------- classification
def register_classifier(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[B], B]:
    """Decorator that registers ``builder(spec: ClassifierSpec) -> nn.Module`` under ``name`` (and deprecated
    ``aliases``).

    Raises:
        InvalidParameterError: ``name`` or an alias is empty or already taken.
    """
    return _CLASSIFIERS.register(name, aliases=aliases)


def build_classifier(spec: ClassifierSpec) -> torch.nn.Module:
    """Build the classifier described by ``spec`` (fresh weights, training mode, float32, on the CPU).

    The module maps ``(B, C, *spatial)`` to ``(B, n_classes)`` logits, keeps the spec (with the registered name)
    in its ``spec`` attribute and exposes ``cam_layer``, the last convolutional block (for Grad-CAM).

    Raises:
        InvalidParameterError: ``spec`` is not a ClassifierSpec, its name is unknown, or the model does not
            support it (e.g. ``resnet18_acs`` with ``dims=2``).

    Example:
        >>> net = build_classifier(ClassifierSpec(name="resnet18", dims=2, width=4, n_classes=3))
        >>> net.eval()(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 3])
    """
    return _CLASSIFIERS.build(spec)


def list_classifiers(pattern: str | None = None, *, include_aliases: bool = False) -> list[str]:
    """Registered classifier names, sorted, optionally filtered by a shell-style ``pattern`` (``"resnet*"``)."""
    return _CLASSIFIERS.names(pattern, include_aliases=include_aliases)

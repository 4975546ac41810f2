"""Registration networks, registered by name: a :class:`RegistrationSpec` in, an ``nn.Module`` out whose
``forward(fixed, moving)`` returns ``(warped, displacement)`` and whose ``predict_field(fixed, moving)`` returns the
raw field (see :class:`medimg.models.registration_unet.RegistrationUNet`).

Example:
    >>> net = build_registration_net(RegistrationSpec(name="registration_unet", dims=2, features=(4, 8)))
    >>> net.divisor, list_registration_nets()
    (2, ['registration_unet'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from medimg.core.errors import InvalidParameterError
from medimg.models.registry import B, Registry

__all__ = ["RegistrationSpec", "register_registration_net", "build_registration_net", "list_registration_nets"]


@dataclass(frozen=True)
class RegistrationSpec:
    """What registration network to build: name, 2D/3D, channels per level, velocity integration."""

    name: str = "registration_unet"
    dims: int = 3
    features: tuple[int, ...] = (16, 32, 32, 32)
    integrate: bool = True
    steps: int = 7

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if self.dims not in (2, 3):
            raise InvalidParameterError("invalid registration spec", parameter="dims", expected="2 | 3",
                                        found=self.dims, fix="use 2 or 3")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        return d


_REGISTRATION: Registry[RegistrationSpec] = Registry("registration network", RegistrationSpec,
                                                     lister="medimg.models.list_registration_nets()")


def register_registration_net(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[B], B]:
    """Decorator registering ``builder(spec: RegistrationSpec) -> nn.Module`` under ``name``."""
    return _REGISTRATION.register(name, aliases=aliases)


def build_registration_net(spec: RegistrationSpec) -> torch.nn.Module:
    """Build the registration network described by ``spec`` (fresh weights; the field starts near identity)."""
    return _REGISTRATION.build(spec)


def list_registration_nets(pattern: str | None = None) -> list[str]:
    """Registered registration network names, sorted, optionally filtered by a shell-style pattern."""
    return _REGISTRATION.names(pattern)


@register_registration_net("registration_unet")
def _registration_unet(spec: RegistrationSpec) -> torch.nn.Module:
    from medimg.models.registration_unet import RegistrationUNet

    return RegistrationUNet(spec.dims, features=spec.features, integrate=spec.integrate, steps=spec.steps)

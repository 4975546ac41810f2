"""Network architectures, registered by name; no training logic lives here.

Describe a network with a :class:`NetworkSpec`, build it with :func:`build_network`, list the names with
:func:`list_models`. Registered: ``unet``, ``attention_unet``, ``unet_pp``, ``deeplab_unet``, ``vnet`` (3D only).

Example:
    >>> from medimg.models import NetworkSpec, build_network
    >>> net = build_network(NetworkSpec(name="unet", dims=2, n_stages=3, base_channels=4)).eval()
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 2, 32, 32])
"""

import torch  # noqa: F401  (used by the doctest above)

from medimg.models.registry import build_network, list_models, register_model, resolve_model_name
from medimg.models.spec import NetworkSpec, deep_supervision_scales

# importing the model modules registers them (after the registry exists)
from medimg.models import unet, unet_pp, vnet  # noqa: E402, F401  isort: skip

__all__ = [
    "NetworkSpec", "build_network", "list_models", "register_model", "resolve_model_name",
    "deep_supervision_scales",
]

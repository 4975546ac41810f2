"""Network architectures, registered by name; no training logic lives here.

Segmentation: describe a network with a :class:`NetworkSpec`, build it with :func:`build_network`, list the
names with :func:`list_models`. Registered: ``unet``, ``attention_unet``, ``unet_pp``, ``deeplab_unet``, ``vnet``
(3D only).

Classification: describe a network with a :class:`ClassifierSpec`, build it with :func:`build_classifier`, list
the names with :func:`list_classifiers`. Registered: ``resnet18``, ``resnet34``, ``vgg16``, ``densenet121``,
``mobilenetv3_small`` (2D and 3D), ``resnet18_25d``, ``resnet18_acs`` and ``slice_lstm`` (volumes). Each maps
``(B, C, *spatial)`` to ``(B, n_classes)`` logits and exposes ``cam_layer`` for Grad-CAM.

Registration: :class:`RegistrationSpec`, :func:`build_registration_net`, :func:`list_registration_nets`;
registered: ``registration_unet`` (a dense displacement or velocity field from a fixed/moving pair,
:mod:`medimg.models.registration_unet`); the dense-field transforms it uses (warp, scaling and squaring, composition,
units) are in :mod:`medimg.models.spatial`.

Example:
    >>> from medimg.models import NetworkSpec, build_network
    >>> net = build_network(NetworkSpec(name="unet", dims=2, n_stages=3, base_channels=4)).eval()
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 2, 32, 32])
    >>> clf = build_classifier(ClassifierSpec(name="densenet121", dims=3, width=4)).eval()
    >>> clf(torch.zeros(2, 1, 8, 8, 8)).shape
    torch.Size([2, 2])
"""

import torch  # noqa: F401  (used by the doctest above)

from medimg.models.classifier_spec import ClassifierSpec
from medimg.models.registration import (
    RegistrationSpec,
    build_registration_net,
    list_registration_nets,
    register_registration_net,
)
from medimg.models.registry import (
    build_classifier,
    build_network,
    list_classifiers,
    list_models,
    register_classifier,
    register_model,
    resolve_model_name,
)
from medimg.models.spec import NetworkSpec, deep_supervision_scales

# importing the model modules registers them (after the registry exists)
from medimg.models import unet, unet_pp, vnet  # noqa: E402, F401  isort: skip
from medimg.models import acs, densenet, mobilenet, resnet, slice_lstm, vgg  # noqa: E402, F401  isort: skip

__all__ = [
    "NetworkSpec", "build_network", "list_models", "register_model", "resolve_model_name",
    "deep_supervision_scales",
    "ClassifierSpec", "build_classifier", "list_classifiers", "register_classifier",
    "RegistrationSpec", "build_registration_net", "list_registration_nets", "register_registration_net",
]

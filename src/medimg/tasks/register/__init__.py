"""Learned registration building blocks: dense-field warping and integration, losses, regularisers, a U-Net.

Fields are ``(B, D, *spatial)`` displacements in voxels, components in spatial-axis order (z, y, x / y, x), applied
as a pull-back ``warped(x) = moving(x + u(x))`` on the fixed grid. No training command yet (issue 6).
"""

from medimg.tasks.register.losses import (
    bending_energy,
    diffusion_regulariser,
    local_ncc_loss,
    mse_loss,
    mutual_information_loss,
    soft_dice_loss,
)
from medimg.tasks.register.network import RegistrationUNet
from medimg.tasks.register.transform import (
    SpatialTransformer,
    compose,
    from_physical,
    identity_grid,
    integrate_velocity,
    to_metric_layout,
    to_physical,
    warp,
)

__all__ = [
    "SpatialTransformer", "warp", "identity_grid", "integrate_velocity", "compose", "to_physical", "from_physical",
    "to_metric_layout", "local_ncc_loss", "mutual_information_loss", "mse_loss", "diffusion_regulariser",
    "bending_energy", "soft_dice_loss", "RegistrationUNet",
]

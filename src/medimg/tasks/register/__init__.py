"""Learned deformable registration: building blocks, the self-configuring trainer and prediction.

Fields are ``(B, D, *spatial)`` displacements in voxels, components in spatial-axis order (z, y, x / y, x), applied
as a pull-back ``warped(x) = moving(x + u(x))`` on the fixed grid.

* :func:`train_registration` (``medimg train register DATA -o MODEL_DIR``): plan (:class:`RegisterPlan`), folds,
  unsupervised (local NCC / MI / MSE + diffusion or bending energy + optional label Dice) or supervised (simulated
  fields) training with the shared loop.
* :class:`LearnedRegistration` (``medimg register --method learned --model DIR``): a model folder (or zoo name)
  -> a :class:`~medimg.classical.registration.RegistrationResult` whose transform is ``A o (x + u(x))``.

Example:
    >>> reg = LearnedRegistration.load("hippocampus_registration")          # doctest: +SKIP
    >>> result = reg.register(fixed_image, moving_image)                     # doctest: +SKIP
    >>> result.seconds, result.transform.GetName()                           # doctest: +SKIP
    (0.06, 'CompositeTransform')
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
from medimg.tasks.register.plan import RegisterPlan, plan_registration
from medimg.tasks.register.predict import LearnedRegistration
from medimg.tasks.register.trainer import RegisterTrainOptions, train_registration
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
    "bending_energy", "soft_dice_loss", "RegistrationUNet", "RegisterPlan", "plan_registration",
    "LearnedRegistration", "RegisterTrainOptions", "train_registration",
]

"""Registration with a trained model: :func:`load` -> :class:`LearnedRegistration` (``medimg register --method
learned``; :func:`medimg.tasks.register.pairs.register_images` runs it like the classical methods).

Learned registration (:class:`LearnedRegistration`, :func:`load`): for a pair, the fixed image's grid at the plan's
spacing (centred on the fixed image, grown to cover it) receives the fixed image and the moving image resampled
through the pre-alignment (centre translation, or a classical affine registration with ``prealign="affine"``), both
normalised as in training. The network predicts a displacement ``u`` (voxels) on that grid; every fold's velocity (or
displacement) is averaged before integration. The result is a SimpleITK transform ``T(x) = A(x + u(x))`` (fixed
points -> moving points, LPS mm): a composite of the pre-alignment ``A`` and a ``DisplacementFieldTransform``, so
that warping, label warping, Jacobian statistics, inverse consistency and transform files work as for the classical
methods (:class:`~medimg.classical.registration.RegistrationResult`).

A registration model is not run by ``medimg predict`` (the task's ``predict`` is None): its pointer is
:data:`POINTER`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import SimpleITK as sitk

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image
from medimg.tasks.register.plan import RegisterPlan

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["LearnedRegistration", "is_registration_model", "load", "predict", "POINTER", "build_registration_network",
           "network_displacement"]

#: What runs a registration model (``medimg predict`` on one says this in one line).
POINTER = "medimg register FIXED MOVING -o OUT --method learned --model MODEL"
#: The task's in-memory ``predict``: None, registration models register pairs (see :func:`register_images`).
predict = None


def is_registration_model(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder/plan.json`` is a registration plan (read by the registry's one model-folder reader)."""
    from medimg.core.errors import MedimgError
    from medimg.tasks.registry import task_of_folder

    try:
        return task_of_folder(folder) == "register"
    except MedimgError:
        return False


@dataclass
class LearnedRegistration:
    """A loaded registration model: its plan, folder and one network per trained fold."""

    plan: RegisterPlan
    folder: Path
    nets: list[Any]
    folds: list[str]
    #: "auto" | "fp32" | "bf16": the precision of the network pass (:func:`medimg.train.precision.resolve_precision`)
    precision: str = "auto"

    @classmethod
    def load(cls, model: str | os.PathLike[str], *, folds: str | None = None,
             precision: str = "auto") -> LearnedRegistration:
        """Load a model folder (or a zoo name) trained by ``medimg train register``.

        ``precision`` ("auto": bf16 where the CPU computes it natively, else float32; "fp32"; "bf16") sets how
        :meth:`register` runs the networks; the precision used is recorded in the result's ``params``.

        Raises:
            ImageReadError: no such model, no trained fold, unreadable weights.
            InvalidParameterError: the folder holds another kind of model.
        """
        from medimg.plans.model_folder import check_network_memory
        from medimg.train.callbacks import load_weights
        from medimg.train.precision import resolve_precision
        from medimg.zoo import resolve_model

        resolve_precision(precision)  # an unknown value fails here, before any loading
        folder = resolve_model(model)
        plan_path = folder / "plan.json"
        if not plan_path.is_file():
            raise ImageReadError("not a model folder", path=folder, expected="plan.json and fold_*/model.pt",
                                 found="no plan.json", fix="give a folder written by `medimg train register`")
        if not is_registration_model(folder):
            raise InvalidParameterError("not a registration model", path=plan_path, parameter="--model",
                                        expected="a model trained by `medimg train register`",
                                        found="a plan of another task (segmentation or classification?)",
                                        fix="give a registration model folder, e.g. the zoo's "
                                            "hippocampus_registration")
        plan = RegisterPlan.load(plan_path)
        check_network_memory(batch=1, spatial=plan.grid, channels=max(int(plan.features[0]), 2), path=plan_path,
                             fields="grid")
        weights = sorted(folder.glob("fold_*/model.pt"))
        if folds is not None:
            wanted = {f"fold_{f.strip()}" if not f.strip().startswith("fold_") else f.strip()
                      for f in folds.split(",")}
            weights = [w for w in weights if w.parent.name in wanted]
        if not weights:
            raise ImageReadError("no trained fold in the model folder", path=folder,
                                 expected="fold_*/model.pt", found="none" if folds is None else f"none of {folds}",
                                 fix="train one: medimg train register DATA -o " + str(folder))
        nets = []
        for w in weights:
            net = build_registration_network(plan)
            state = load_weights(w)
            try:
                net.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError) as exc:
                raise ImageReadError("unreadable or mismatched weights", path=w,
                                     expected="weights written by `medimg train register` for this plan",
                                     found=f"{type(exc).__name__}: {str(exc)[:120]}",
                                     fix="train the fold again") from exc
            nets.append(net.eval())
        return cls(plan=plan, folder=folder, nets=nets, folds=[w.parent.name for w in weights], precision=precision)

    # ---- one pair ----------------------------------------------------------------------------------------------
    def register(self, fixed: Image, moving: Image, *, prealign: str | None = None, seed: int = 0) -> Any:
        """Register ``moving`` onto ``fixed``; returns a :class:`~medimg.classical.registration.RegistrationResult`
        with ``method="learned"`` (``seconds``: pre-alignment, resampling, network and field conversion, no I/O).

        Raises:
            InvalidParameterError: not single-channel, a dimension other than the model's, non-finite voxels,
                an unknown ``prealign``, fields of view that do not overlap.
        """
        from medimg.classical.registration import RegistrationResult, register, warp
        from medimg.classical.registration_checks import check_overlap, float_sitk
        from medimg.classical.registration_stages import evaluate_metric
        from medimg.core.image import Operation
        from medimg.tasks.register.data import check_pair_image
        from medimg.tasks.register.preprocess import canonical_grid, centre_translation, to_canonical

        plan = self.plan
        prealign = prealign or plan.prealign
        if prealign not in ("center", "affine"):
            raise InvalidParameterError("unknown pre-alignment", parameter="--prealign", expected="center | affine",
                                        found=prealign, fix="use --prealign center or --prealign affine")
        fixed = check_pair_image(fixed, "fixed", plan.dims)
        moving = check_pair_image(moving, "moving", plan.dims)
        f_img, m_img = float_sitk(fixed), float_sitk(moving)
        t0 = time.perf_counter()
        if prealign == "affine":
            pre = register(fixed, moving, method="affine", metric="mattes", init="moments", levels=(2, 1),
                           seed=seed).transform
        else:
            pre = centre_translation(f_img, m_img)
            check_overlap(f_img, m_img, pre, "geometry")
        ref = canonical_grid(f_img, plan.spacing, plan.grid, divisor=plan.divisor, cover=True)
        f_arr = to_canonical(fixed, ref, percentiles=plan.percentiles)
        m_arr = to_canonical(moving, ref, transform=pre, percentiles=plan.percentiles)
        from medimg.train.precision import precision_name, resolve_precision

        used = precision_name(resolve_precision(self.precision, "cpu"))
        u = network_displacement(self.nets, f_arr, m_arr, plan, autocast_bf16=used == "bf16")
        field_tx = _field_transform(u[0].numpy(), ref)
        transform = sitk.CompositeTransform(plan.dims)
        transform.AddTransform(pre)
        transform.AddTransform(field_tx)
        seconds = time.perf_counter() - t0
        metric = "mattes" if plan.similarity == "mi" else "ncc"
        before = evaluate_metric(f_img, m_img, None, metric, None, None, 50)
        after = evaluate_metric(f_img, m_img, transform, metric, None, None, 50)
        params = {"method": "learned", "model": str(self.folder), "folds": list(self.folds),
                  "prealign": prealign, "network_grid": [int(v) for v in ref.GetSize()[::-1]],
                  "network_spacing": list(plan.spacing), "integrate": plan.integrate,
                  "similarity_trained": plan.similarity, "seed": int(seed), "precision": used}
        warped = warp(moving, transform, fixed, labels=False)
        warped = warped.replace(history=moving.history + (Operation("register", params),))
        return RegistrationResult(method="learned", metric=metric, transform=transform, warped=warped,
                                  metric_before=before, metric_after=after, iterations=1, seconds=seconds,
                                  stop_condition=f"one forward pass of {len(self.nets)} network(s)",
                                  fixed_reference=fixed, params=params)


def _field_transform(u: np.ndarray, ref: sitk.Image) -> sitk.Transform:
    """A DisplacementFieldTransform on ``ref``'s grid from a voxel displacement ``u`` ``(D, *spatial)`` whose
    components follow the array axes ((z,) y, x): physical ``d = direction @ (spacing * u_xyz)``."""
    dims = ref.GetDimension()
    spacing = np.asarray(ref.GetSpacing(), dtype=np.float64)
    direction = np.asarray(ref.GetDirection(), dtype=np.float64).reshape(dims, dims)
    u_xyz = u[::-1].astype(np.float64)  # components x, y[, z]
    phys = np.tensordot(direction, u_xyz * spacing.reshape((dims,) + (1,) * dims), axes=(1, 0))
    vec = np.moveaxis(phys, 0, -1)  # (*spatial, D)
    img = sitk.GetImageFromArray(np.ascontiguousarray(vec), isVector=True)
    img.CopyInformation(ref)
    img = sitk.Cast(img, sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(img)


def build_registration_network(plan: RegisterPlan) -> torch.nn.Module:
    """The plan's network, built through the model registry."""
    from medimg.models import RegistrationSpec, build_registration_net

    return build_registration_net(RegistrationSpec(name="registration_unet", dims=plan.dims,
                                                   features=plan.features, integrate=plan.integrate,
                                                   steps=plan.steps))


def network_displacement(nets: Sequence[torch.nn.Module], fixed: np.ndarray, moving: np.ndarray, plan: RegisterPlan,
                         *, autocast_bf16: bool = True) -> torch.Tensor:
    """The displacement ``(1, D, *spatial)`` (voxels) of canonical arrays: every network's raw field (under bf16
    autocast when ``autocast_bf16``, no gradients), averaged, then integrated when the plan's networks predict
    velocities."""
    import torch

    from medimg.models.spatial import integrate_velocity

    f = torch.from_numpy(np.ascontiguousarray(fixed, dtype=np.float32))[None, None]
    m = torch.from_numpy(np.ascontiguousarray(moving, dtype=np.float32))[None, None]
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            raws = [net.predict_field(f, m).float() for net in nets]
        raw = torch.stack(raws).mean(0)
        return integrate_velocity(raw, plan.steps) if plan.integrate else raw


def load(folder: str | os.PathLike[str], **options: Any) -> LearnedRegistration:
    """The registry's loader: a model folder (or zoo name) trained by ``medimg train register``
    (``options``: ``folds``, ``precision``; see :meth:`LearnedRegistration.load`)."""
    return LearnedRegistration.load(folder, **options)

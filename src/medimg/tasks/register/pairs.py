"""The library side of ``medimg register``: register a pair of images in memory with any method.

:func:`register_images` registers one pair (nothing written) with a classical method
(:mod:`medimg.classical.registration`) or a learned model (:class:`~medimg.tasks.register.predictor.
LearnedRegistration`) and returns a :class:`~medimg.tasks.register.writer.RegisterResult`, whose ``write(out)``
writes the command's per-pair folder and ``to_dict()`` its metrics.json; :class:`RegisterOptions` holds the
command's settings; :func:`register_pair` reads a pair's files first (:func:`~medimg.tasks.register.data.load_pair`).

Example:
    >>> from medimg.io import read
    >>> result = register_images(read("fixed.nii.gz"), read("moving.nii.gz"), RegisterOptions(method="affine"))
    ... # doctest: +SKIP
    >>> paths = result.write("out/")      # warped.nii.gz, transform.tfm, metrics.json, report.html, figures/
    ... # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.tasks.register.data import Pair
from medimg.tasks.register.writer import RegisterResult

if TYPE_CHECKING:  # the learned model's module imports SimpleITK: loaded when a model is
    from medimg.tasks.register.predictor import LearnedRegistration

__all__ = ["METHODS", "RegisterOptions", "parse_levels", "register_images", "register_pair"]

#: ``medimg register --method`` values.
METHODS = ("rigid", "affine", "bspline", "demons", "diffeomorphic-demons", "learned")


def parse_levels(text: str | Sequence[int]) -> tuple[int, ...]:
    """Shrink factors per level from ``"4,2,1"`` (or a sequence of integers).

    Raises:
        InvalidParameterError: not integers separated by commas.
    """
    if not isinstance(text, str):
        return tuple(int(v) for v in text)
    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError as exc:
        raise InvalidParameterError("invalid levels", parameter="--levels", expected="integers like 4,2,1",
                                    found=repr(text), fix="give shrink factors separated by commas") from exc


@dataclass(frozen=True)
class RegisterOptions:
    """The settings of one ``medimg register`` run (the command's flags; the inputs are the pair's).

    Attributes:
        method: rigid | affine | bspline | demons | diffeomorphic-demons | learned (:data:`METHODS`).
        metric, init, levels, iterations, bspline_grid_mm, sampling, seed, threads: the classical method's settings
            (:func:`medimg.classical.registration.register`; ``sampling`` is its ``sampling_fraction``).
        model: ``method="learned"``: a model folder or zoo name; prealign: its pre-alignment (None: the plan's);
        precision: its network precision (auto | fp32 | bf16).
    """

    method: str = "rigid"
    metric: str = "mattes"
    init: str = "geometry"
    levels: tuple[int, ...] = (4, 2, 1)
    iterations: int | None = None
    bspline_grid_mm: float = 40.0
    sampling: float = 0.2
    seed: int = 0
    threads: int = 1
    model: str | None = None
    prealign: str | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", parse_levels(self.levels))
        self.check()

    @property
    def method_name(self) -> str:
        """The method as the results record it (``diffeomorphic_demons``)."""
        return self.method.replace("-", "_")

    def check(self) -> None:
        """Refuse settings that cannot go together (one line naming the flag).

        Raises:
            InvalidParameterError: an unknown method, a non-finite or non-positive size, negative threads, a learned
                method without a model, classical settings with the learned method, or learned settings without it.
        """
        if self.method not in METHODS:
            raise InvalidParameterError("unknown registration method", parameter="--method",
                                        expected=" | ".join(METHODS), found=repr(self.method),
                                        fix="pick one of the listed methods")
        for flag, value in (("--bspline-grid-mm", self.bspline_grid_mm), ("--sampling", self.sampling)):
            if not (math.isfinite(value) and value > 0):
                raise InvalidParameterError("not a finite number > 0", parameter=flag,
                                            expected="a finite number > 0" + (" (mm)" if "mm" in flag else ""),
                                            found=value, fix=f"give e.g. {flag} {'40' if 'mm' in flag else '0.2'}")
        if self.threads < 0:
            raise InvalidParameterError("invalid number of threads", parameter="--threads",
                                        expected="an integer >= 0 (0: every core)", found=self.threads,
                                        fix="give --threads 1 for repeatable results")
        if self.method == "learned" and not self.model:
            raise InvalidParameterError("--method learned needs --model", parameter="--model",
                                        expected="a model folder trained by `medimg train register`, or a zoo name",
                                        found="no --model", fix="add --model hippocampus_registration (see `medimg "
                                        "models`) or --model MODEL_DIR")
        for flag, value in (("--model", self.model), ("--prealign", self.prealign)):
            if value and self.method != "learned":
                raise InvalidParameterError(f"{flag} applies to --method learned only", parameter=flag,
                                            expected="--method learned", found=f"--method {self.method}",
                                            fix=f"add --method learned, or leave {flag} out")
        if self.method == "learned":
            classical = (("--metric", self.metric, "mattes"), ("--init", self.init, "geometry"),
                         ("--levels", self.levels, (4, 2, 1)), ("--iterations", self.iterations, None),
                         ("--bspline-grid-mm", self.bspline_grid_mm, 40.0), ("--sampling", self.sampling, 0.2),
                         ("--threads", self.threads, 1))
            for flag, value, default in classical:
                if value != default:
                    shown = ",".join(map(str, value)) if flag == "--levels" else value
                    raise InvalidParameterError(f"{flag} is a setting of the classical methods", parameter=flag,
                                                expected="no classical settings with --method learned (the "
                                                "model's plan.json fixes the learned method's)",
                                                found=f"{flag} {shown}", fix=f"leave {flag} out, or use a classical "
                                                "method")

    def settings(self) -> dict[str, Any]:
        """The settings as a batch's summary.json records them."""
        return {"method": self.method_name, "metric": self.metric, "init": self.init, "model": self.model,
                "prealign": self.prealign, "levels": list(self.levels), "iterations": self.iterations,
                "bspline_grid_mm": self.bspline_grid_mm, "sampling_fraction": self.sampling, "seed": self.seed,
                "threads": self.threads}

    def load_model(self) -> LearnedRegistration | None:
        """The learned model (``method="learned"``), else None; load it once for many pairs."""
        if self.method != "learned":
            return None
        from medimg.tasks.register.predictor import LearnedRegistration

        return LearnedRegistration.load(str(self.model), precision=self.precision)


def register_images(fixed: Image, moving: Image, options: RegisterOptions = RegisterOptions(), *,
                    labels: Image | None = None, fixed_labels: Image | None = None, fixed_mask: Image | None = None,
                    moving_mask: Image | None = None, landmarks: tuple[np.ndarray, np.ndarray] | None = None,
                    model: LearnedRegistration | None = None, pair: Pair | None = None) -> RegisterResult:
    """Register ``moving`` onto ``fixed`` in memory (nothing is written): the transform, the warped image (and
    ``labels``, the moving label map), the displacement field and Jacobian statistics (deformable methods), inverse
    consistency, Dice per label before/after (``fixed_labels`` with ``labels``), TRE (``landmarks``: fixed and
    moving points, LPS mm) and the figures.

    Args:
        model: a loaded learned model (:meth:`RegisterOptions.load_model`), to load it once for many pairs; None
            loads ``options.model`` when ``options.method == "learned"``.
        pair: the file names the results record (and the CSV line errors name); None: ``fixed``/``moving``.

    Returns:
        a :class:`~medimg.tasks.register.writer.RegisterResult`; ``result.write(out)`` writes the command's files.

    Raises:
        InvalidParameterError, RegistrationError: bad images or settings, a registration that fails.

    Example:
        >>> result = register_images(fixed, moving, RegisterOptions(method="affine"))      # doctest: +SKIP
        >>> result.to_dict()["metric_after"] < result.to_dict()["metric_before"]           # doctest: +SKIP
        True
    """
    import SimpleITK as sitk

    from medimg import __version__
    from medimg.classical.registration import (
        displacement_field,
        inverse_consistency,
        is_deformable,
        jacobian_summary,
        register,
        registration_figures,
        warp,
    )
    from medimg.core.errors import MedimgError
    from medimg.tasks.register.data import name_line
    from medimg.tasks.register.evaluate import label_dice, landmark_tre

    pair = pair if pair is not None else Pair(fixed="fixed", moving="moving")
    try:
        if options.method == "learned":
            model = model if model is not None else options.load_model()
            assert model is not None
            result = model.register(fixed, moving, prealign=options.prealign, seed=options.seed)
        else:
            result = register(fixed, moving, method=options.method_name, metric=options.metric, init=options.init,
                              fixed_mask=fixed_mask, moving_mask=moving_mask, levels=options.levels,
                              iterations=options.iterations, bspline_grid_mm=options.bspline_grid_mm,
                              sampling_fraction=options.sampling, seed=options.seed, threads=options.threads)
    except MedimgError as exc:
        name_line(exc, pair)
        raise
    t0 = time.perf_counter()
    deformable = is_deformable(result.transform)
    summary: dict[str, Any] = {"medimg_version": __version__, "fixed": pair.fixed, "moving": pair.moving,
                               **result.summary()}
    summary["seconds_definition"] = "wall time of the registration only (no reading, writing or imports)"
    field = None
    if deformable:
        field = displacement_field(result)
        summary["jacobian"] = jacobian_summary(field)
    summary["inverse_consistency"] = inverse_consistency(result)
    if landmarks is not None:
        summary["fixed_landmarks"], summary["moving_landmarks"] = pair.fixed_landmarks, pair.moving_landmarks
        summary["tre"] = landmark_tre(result.transform, *landmarks)
    identity = sitk.Transform(2 if fixed.is_2d else 3, sitk.sitkIdentity)
    figures = registration_figures(result, warp(moving, identity, fixed, labels=False))
    warped_labels = None
    if labels is not None:
        warped_labels = warp(labels, result.transform, fixed, labels=True)
        summary["labels"] = pair.moving_labels
    if fixed_labels is not None and labels is not None:
        before = warp(labels, identity, fixed, labels=True)
        d_before, d_after = label_dice(fixed_labels, before), label_dice(fixed_labels, warped_labels)
        summary["fixed_labels"] = pair.fixed_labels
        summary["dice"] = {
            "per_label": {k: {"before": v, "after": d_after["per_label"][k]} for k, v in d_before["per_label"].items()},
            "mean_before": d_before["mean"], "mean_after": d_after["mean"],
            "before_definition": "moving labels on the fixed grid without any transform (identity)",
        }
    return RegisterResult(registration=result, metrics=summary, fixed=fixed, moving=moving, field=field,
                          warped_labels=warped_labels, figures=figures, seconds_computing=time.perf_counter() - t0)


def register_pair(pair: Pair, options: RegisterOptions = RegisterOptions(), *,
                  model: LearnedRegistration | None = None) -> RegisterResult:
    """Read a pair's files (:func:`~medimg.tasks.register.data.load_pair`) and register them
    (:func:`register_images`); nothing is written."""
    from medimg.tasks.register.data import load_pair

    data = load_pair(pair)
    return register_images(data.fixed, data.moving, options, labels=data.labels, fixed_labels=data.fixed_labels,
                           fixed_mask=data.fixed_mask, moving_mask=data.moving_mask, landmarks=data.landmarks,
                           model=model, pair=pair)

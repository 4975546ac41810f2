"""`medimg register FIXED MOVING -o OUT`: classical registration (rigid, affine, B-spline, demons).

Output contract (scripts may rely on it)::

    OUT/warped.nii.gz         MOVING resampled onto FIXED's grid (linear, float32)
    OUT/warped_labels.nii.gz  --labels resampled onto FIXED's grid (nearest neighbour), when given
    OUT/transform.tfm         rigid/affine: ITK text transform, fixed points (LPS mm) -> moving points
    OUT/transform.h5          bspline/demons: ITK HDF5 composite [pre-alignment, deformable]
    OUT/displacement.nii.gz   bspline/demons: ITK vector displacement field on FIXED's grid (mm, x y z, LPS)
    OUT/metrics.json          method, metric, seconds (registration only, no I/O), metric before/after,
                              Jacobian statistics (deformable), Dice per label before/after (--fixed-labels)

OUT is built in a temporary folder beside it and renamed at the end; it must not exist yet (or be empty).
"""

from __future__ import annotations

import argparse
from typing import Any

_METHODS = ("rigid", "affine", "bspline", "demons", "diffeomorphic-demons")


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002 - argparse's own keyword
    p = subparsers.add_parser(
        "register", parents=parents, help=help,
        description="Register MOVING onto FIXED with SimpleITK (multi-resolution; Mattes MI, NCC or mean "
        "squares; rigid, affine, B-spline free-form or demons after an affine pre-alignment) and write "
        "OUT/warped.nii.gz, OUT/transform.tfm|.h5, OUT/displacement.nii.gz (deformable), "
        "OUT/warped_labels.nii.gz (--labels) and OUT/metrics.json. Demons assumes the same modality.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("fixed", help="fixed (reference) image")
    p.add_argument("moving", help="moving image, registered onto FIXED")
    p.add_argument("-o", "--out", required=True, help="output folder (new or empty)")
    p.add_argument("--method", choices=_METHODS, default="rigid", help="transform model")
    p.add_argument("--metric", choices=("mattes", "ncc", "meansquares"), default="mattes",
                   help="similarity: mattes (mutual information, any modality pair), ncc, meansquares")
    p.add_argument("--init", choices=("geometry", "moments", "none"), default="geometry",
                   help="initial alignment: image centres, intensity centres of mass, or none")
    p.add_argument("--labels", metavar="MOVING_LABELS", help="label map on MOVING's grid to warp (nearest)")
    p.add_argument("--fixed-labels", metavar="FIXED_LABELS",
                   help="label map on FIXED's grid: Dice per label before and after, in metrics.json")
    p.add_argument("--fixed-mask", metavar="MASK", help="metric mask on FIXED's grid")
    p.add_argument("--moving-mask", metavar="MASK", help="metric mask on MOVING's grid")
    p.add_argument("--levels", default="4,2,1", help="shrink factors per resolution level, coarsest first")
    p.add_argument("--iterations", type=int, default=None,
                   help="maximum iterations per level (default: 200 rigid, 100 affine/bspline, 50 demons)")
    p.add_argument("--bspline-grid-mm", type=float, default=40.0, help="B-spline control point spacing (mm)")
    p.add_argument("--sampling", type=float, default=0.2, help="fraction of fixed voxels sampled by the metric")
    p.add_argument("--seed", type=int, default=0, help="seed of the metric sampling (written to metrics.json)")


def _levels(text: str) -> tuple[int, ...]:
    from medimg.core.errors import InvalidParameterError

    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError as exc:
        raise InvalidParameterError("invalid levels", parameter="--levels", expected="integers like 4,2,1",
                                    found=repr(text), fix="give shrink factors separated by commas") from exc


def _read(path: str, *, kind: str | None = None):
    from medimg.io import read

    return read(path, kind=kind)


def _on_grid(image, other, image_name: str, option: str, path: str) -> None:
    from medimg.classical.registration import _check_on_grid
    from medimg.core.errors import InvalidParameterError

    try:
        _check_on_grid(image, other, image_name, option)
    except InvalidParameterError as exc:
        raise InvalidParameterError(exc.what, path=path, parameter=option, expected=exc.expected,
                                    found=exc.found, fix=exc.fix) from exc


def label_dice(fixed_labels, labels) -> dict[str, Any]:
    """Dice per label value of ``fixed_labels`` (labels already on the fixed grid), and their mean."""
    import numpy as np

    from medimg.metrics.segmentation import dice

    ref, pred = np.asarray(fixed_labels.array), np.asarray(labels.array)
    ids = [int(v) for v in np.unique(ref) if v != 0]
    per = {str(i): float(dice(pred, ref, label=i)) for i in ids}
    return {"per_label": per, "mean": float(np.mean(list(per.values()))) if per else None}


def run(args: argparse.Namespace) -> int:
    import json
    import time

    import SimpleITK as sitk

    from medimg import __version__
    from medimg.classical.registration import (
        displacement_field,
        jacobian_summary,
        register,
        save_transform,
        warp,
    )
    from medimg.core.errors import InvalidParameterError
    from medimg.io import write
    from medimg.io._files import atomic_output_dir, check_input
    from medimg.io.sitk_bridge import to_sitk

    method = args.method.replace("-", "_")
    levels = _levels(args.levels)
    if args.fixed_labels and not args.labels:
        raise InvalidParameterError("--fixed-labels needs --labels", parameter="--fixed-labels",
                                    expected="--labels MOVING_LABELS too", found="only --fixed-labels",
                                    fix="give the moving image's label map with --labels")
    inputs = [p for p in (args.fixed, args.moving, args.labels, args.fixed_labels, args.fixed_mask,
                          args.moving_mask) if p]
    for p in inputs:
        check_input(p, allow_dir=True)
    fixed, moving = _read(args.fixed), _read(args.moving)
    labels = _read(args.labels, kind="label") if args.labels else None
    fixed_labels = _read(args.fixed_labels, kind="label") if args.fixed_labels else None
    fixed_mask = _read(args.fixed_mask, kind="label") if args.fixed_mask else None
    moving_mask = _read(args.moving_mask, kind="label") if args.moving_mask else None
    for image, other, name, option, path in (
        (moving, labels, "moving", "--labels", args.labels),
        (fixed, fixed_labels, "fixed", "--fixed-labels", args.fixed_labels),
        (fixed, fixed_mask, "fixed", "--fixed-mask", args.fixed_mask),
        (moving, moving_mask, "moving", "--moving-mask", args.moving_mask),
    ):
        if other is not None:
            _on_grid(image, other, name, option, path)

    result = register(fixed, moving, method=method, metric=args.metric, init=args.init, fixed_mask=fixed_mask,
                      moving_mask=moving_mask, levels=levels, iterations=args.iterations,
                      bspline_grid_mm=args.bspline_grid_mm, sampling_fraction=args.sampling, seed=args.seed)
    t0 = time.perf_counter()
    deformable = method in ("bspline", "demons", "diffeomorphic_demons")
    summary: dict[str, Any] = {"medimg_version": __version__, "fixed": args.fixed, "moving": args.moving,
                               **result.summary()}
    summary["seconds_definition"] = "wall time of the registration only (no reading, writing or imports)"
    field = None
    if deformable:
        field = displacement_field(result)
        summary["jacobian"] = jacobian_summary(field)
    warped_labels = None
    if labels is not None:
        warped_labels = warp(labels, result.transform, fixed, labels=True)
        summary["labels"] = args.labels
    if fixed_labels is not None and labels is not None:
        dim = 2 if fixed.is_2d else 3
        before = warp(labels, sitk.Transform(dim, sitk.sitkIdentity), fixed, labels=True)
        d_before, d_after = label_dice(fixed_labels, before), label_dice(fixed_labels, warped_labels)
        summary["fixed_labels"] = args.fixed_labels
        summary["dice"] = {
            "per_label": {k: {"before": v, "after": d_after["per_label"][k]} for k, v in d_before["per_label"].items()},
            "mean_before": d_before["mean"], "mean_after": d_after["mean"],
            "before_definition": "moving labels on the fixed grid without any transform (identity)",
        }
    transform_name = "transform.h5" if deformable else "transform.tfm"
    with atomic_output_dir(args.out, inputs=inputs) as tmp:
        write(result.warped, tmp / "warped.nii.gz")
        if warped_labels is not None:
            write(warped_labels, tmp / "warped_labels.nii.gz")
        save_transform(result.transform, tmp / transform_name)
        if field is not None:
            # an ITK vector image (NIfTI intent "vector"), as ITK, ANTs and 3D Slicer read displacement fields
            sitk.WriteImage(to_sitk(field), str(tmp / "displacement.nii.gz"), useCompression=True)
        summary["outputs"] = sorted(p.name for p in tmp.iterdir()) + ["metrics.json"]
        summary["seconds_postprocess"] = time.perf_counter() - t0
        (tmp / "metrics.json").write_text(json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n",
                                          encoding="utf-8")
    if not args.quiet:
        print(f"{method} ({args.metric}): metric {result.metric_before:.5g} -> {result.metric_after:.5g} in "
              f"{result.seconds:.2f} s, {result.iterations} iterations")
        if "jacobian" in summary:
            j = summary["jacobian"]
            print(f"Jacobian: folding fraction {j['folding_fraction']:.4g}, std log-Jacobian "
                  f"{j['std_log_jacobian']:.4g}")
        if "dice" in summary:
            print(f"mean Dice over {len(summary['dice']['per_label'])} labels: {summary['dice']['mean_before']:.4f}"
                  f" -> {summary['dice']['mean_after']:.4f}")
        print(f"wrote {args.out}: {', '.join(summary['outputs'])}")
    return 0


def _jsonable(value: Any) -> Any:
    import math

    from medimg.core.image import to_jsonable

    value = to_jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value

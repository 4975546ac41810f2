"""`medimg preprocess IN OUT [options]`: apply deterministic preprocessing steps in a fixed order and write OUT.

The steps run in this order, whatever the order of the options on the command line::

    orient -> crop-foreground -> n4 -> median -> gaussian -> nlm -> diffusion -> resample -> window -> clahe
    -> normalize

Every step is recorded in the image's history. Option values are checked before the input is read; a bad value
is reported on one line with exit code 2.
"""

from __future__ import annotations

import argparse
from typing import Any

ORDER = ("orient", "crop-foreground", "n4", "median", "gaussian", "nlm", "diffusion", "resample", "window",
         "clahe", "normalize")


def add_parser(subparsers, *, parents, help: str) -> None:
    from medimg.cli._args import add_read_options

    p = subparsers.add_parser(
        "preprocess", parents=parents, help=help,
        description="Preprocess an image and write the result (format from OUT's extension). Steps run in the "
        "fixed order: " + " -> ".join(ORDER) + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", help="image file, DICOM file/folder/DICOMDIR/zip")
    from medimg.cli._output import add_output_argument

    add_output_argument(p, help="output file")
    p.add_argument("--label", action="store_true",
                   help="the input is a label map: only --orient, --crop-foreground and --resample (nearest) apply")
    p.add_argument("--modality", metavar="MOD",
                   help="modality to record when the file has none (NIfTI), e.g. CT; HU window presets need CT")
    p.add_argument("--orient", metavar="CODE", help="reorient to a 3-letter ITK code, e.g. LPS or RAS")
    p.add_argument("--crop-foreground", action="store_true",
                   help="crop to the foreground bounding box (Otsu, or > --crop-threshold; labels: != 0)")
    p.add_argument("--crop-threshold", metavar="T", help="intensity threshold for --crop-foreground")
    p.add_argument("--crop-margin", metavar="MM", default="0", help="margin in mm around the foreground")
    p.add_argument("--n4", action="store_true", help="N4 bias-field correction (MR)")
    p.add_argument("--median", metavar="R", help="median filter, radius R voxels")
    p.add_argument("--gaussian", metavar="SIGMA_MM", help="Gaussian smoothing, sigma in mm (S or SX,SY,SZ)")
    p.add_argument("--nlm", action="store_true", help="non-local means denoising (strength from the noise)")
    p.add_argument("--diffusion", metavar="N", help="curvature anisotropic diffusion, N iterations")
    p.add_argument("--resample", metavar="SX,SY,SZ", help="resample to this spacing in mm (or one number)")
    p.add_argument("--interpolation", choices=("linear", "bspline", "nearest", "onehot_linear"),
                   help="interpolation for --resample (default: linear, nearest for --label)")
    p.add_argument("--window", metavar="PRESET|LEVEL,WIDTH",
                   help="CT window: a preset (brain, subdural, lung, mediastinum, bone, abdomen, liver) or "
                   "LEVEL,WIDTH in image units")
    p.add_argument("--window-output", choices=("unit", "hu"), default="unit",
                   help="window to [0, 1] (unit) or keep clipped values (hu)")
    p.add_argument("--clahe", action="store_true", help="contrast-limited adaptive histogram equalisation")
    p.add_argument("--normalize", metavar="METHOD", help="zscore, percentile or minmax")
    add_read_options(p)


def _int(text: str, option: str, minimum: int) -> int:
    from medimg.core.errors import InvalidParameterError

    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidParameterError(
            "not an integer", parameter=option, expected=f"an integer >= {minimum}", found=repr(text),
            fix=f"write e.g. {option} {max(minimum, 1)}",
        ) from exc
    if value < minimum:
        raise InvalidParameterError(
            "value too small", parameter=option, expected=f"an integer >= {minimum}", found=value,
            fix=f"write e.g. {option} {max(minimum, 1)}",
        )
    return value


def _floats(text: str, option: str, count: tuple[int, ...]) -> tuple[float, ...]:
    from medimg.cli._args import parse_floats

    return tuple(parse_floats(text, option=option, count=count) or ())


def _plan(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Validate the options and return the steps as (name, function of an Image), in the fixed order."""
    from functools import partial

    from medimg import preprocess as pp
    from medimg.core.errors import InvalidParameterError

    steps: dict[str, Any] = {}
    if args.orient is not None:
        try:
            code = pp.spatial._parse_orientation(args.orient.upper())
        except InvalidParameterError as exc:
            raise InvalidParameterError(exc.what, parameter="--orient", expected=exc.expected, found=exc.found,
                                        fix="write e.g. --orient LPS or --orient RAS") from exc
        steps["orient"] = partial(pp.reorient, orientation=code)
    if args.crop_threshold is not None and not args.crop_foreground:
        raise InvalidParameterError(
            "--crop-threshold needs --crop-foreground", parameter="--crop-threshold",
            expected="--crop-foreground as well", found="--crop-threshold alone", fix="add --crop-foreground",
        )
    if args.crop_foreground:
        threshold = None if args.crop_threshold is None else _floats(args.crop_threshold, "--crop-threshold", (1,))[0]
        margin = _floats(args.crop_margin, "--crop-margin", (1, 3))
        steps["crop-foreground"] = partial(pp.crop_to_foreground, threshold=threshold,
                                           margin_mm=margin[0] if len(margin) == 1 else margin)
    if args.n4:
        steps["n4"] = pp.n4_bias_correction
    if args.median is not None:
        steps["median"] = partial(pp.median, radius_vox=_int(args.median, "--median", 1))
    if args.gaussian is not None:
        sigma = _floats(args.gaussian, "--gaussian", (1, 3))
        if min(sigma) < 0:
            raise InvalidParameterError(
                "negative sigma", parameter="--gaussian", expected="sigma >= 0 mm", found=sigma,
                fix="write e.g. --gaussian 1.0",
            )
        steps["gaussian"] = partial(pp.gaussian, sigma_mm=sigma[0] if len(sigma) == 1 else sigma)
    if args.nlm:
        steps["nlm"] = pp.nl_means
    if args.diffusion is not None:
        steps["diffusion"] = partial(pp.anisotropic_diffusion, iterations=_int(args.diffusion, "--diffusion", 1))
    if args.resample is not None:
        spacing = _floats(args.resample, "--resample", (1, 2, 3))
        if min(spacing) <= 0:
            raise InvalidParameterError(
                "non-positive spacing", parameter="--resample", expected="spacing > 0 mm", found=spacing,
                fix="write e.g. --resample 1,1,1",
            )
        steps["resample"] = partial(pp.resample, spacing_mm=spacing[0] if len(spacing) == 1 else spacing,
                                    interpolation=args.interpolation)
    elif args.interpolation is not None:
        raise InvalidParameterError(
            "--interpolation needs --resample", parameter="--interpolation", expected="--resample as well",
            found="--interpolation alone", fix="add --resample SX,SY,SZ",
        )
    if args.window is not None:
        text = args.window.strip()
        if "," in text:
            level, width = _floats(text, "--window", (2,))
            if width <= 0:
                raise InvalidParameterError(
                    "non-positive window width", parameter="--window", expected="LEVEL,WIDTH with WIDTH > 0",
                    found=text, fix="write e.g. --window 40,80",
                )
            steps["window"] = partial(pp.window, level=level, width=width, output=args.window_output)
        else:
            if text.lower() not in pp.WINDOW_PRESETS:
                raise InvalidParameterError(
                    "unknown window preset", parameter="--window",
                    expected="one of " + ", ".join(pp.WINDOW_PRESETS) + " or LEVEL,WIDTH", found=repr(text),
                    fix="write e.g. --window lung or --window -600,1500",
                )
            steps["window"] = partial(pp.window, preset=text.lower(), output=args.window_output)
    if args.clahe:
        steps["clahe"] = pp.clahe
    if args.normalize is not None:
        method = args.normalize.strip().lower()
        if method not in ("zscore", "percentile", "minmax"):
            raise InvalidParameterError(
                "unknown normalisation method", parameter="--normalize", expected="zscore, percentile or minmax",
                found=repr(args.normalize), fix="write e.g. --normalize zscore",
            )
        steps["normalize"] = partial(pp.normalize, method=method)
    if args.label:
        not_for_labels = [name for name in steps if name not in ("orient", "crop-foreground", "resample")]
        if not_for_labels:
            raise InvalidParameterError(
                "intensity steps cannot be applied to a label map", parameter="--" + not_for_labels[0],
                expected="only --orient, --crop-foreground, --resample with --label", found=not_for_labels,
                fix="preprocess the intensity image instead, or drop --label",
            )
    return [(name, steps[name]) for name in ORDER if name in steps]


def run(args: argparse.Namespace) -> int:
    from medimg.cli._args import read_input
    from medimg.cli._output import resolve_output
    from medimg.cli.progress import Progress
    from medimg.core.enums import Kind, Modality
    from medimg.core.errors import InvalidParameterError
    from medimg.io import write

    resolve_output(args)
    plan = _plan(args)
    from medimg.cli._args import parse_modality

    modality = parse_modality(args.modality)
    image = read_input(args)
    if args.label:
        image = image.replace(kind=Kind.LABEL)
    if modality is not None:
        recorded = image.metadata.get("modality")
        if recorded is not None and Modality.parse(recorded) != modality:
            raise InvalidParameterError(
                "--modality disagrees with the file", parameter="--modality", expected=str(recorded),
                found=modality.value, fix="drop --modality: the file records its modality",
            )
        image = image.with_metadata(modality=modality.value)
    progress = Progress(len(plan), quiet=args.quiet)
    for name, step in plan:
        image = step(image)
        progress.step(name)
    out = write(image, args.output, inputs=[args.input])
    if not args.quiet:
        sx, sy, sz = image.geometry.spacing
        steps = ", ".join(name for name, _ in plan) or "no steps"
        print(f"wrote {out}: {image.spatial_shape[::-1]} voxels (x, y, z) at {sx:.4g} x {sy:.4g} x {sz:.4g} mm, "
              f"{image.dtype}; {steps}")
    return 0

"""`medimg register FIXED MOVING -o OUT` (one pair) or `medimg register --pairs PAIRS.csv -o OUT` (many pairs).

Output contract (scripts may rely on it)::

    OUT/warped.nii.gz         MOVING resampled onto FIXED's grid (linear, float32)
    OUT/warped_labels.nii.gz  --labels resampled onto FIXED's grid (nearest neighbour), when given
    OUT/transform.tfm         rigid/affine: ITK text transform, fixed points (LPS mm) -> moving points
    OUT/transform.h5          bspline/demons/learned: ITK HDF5 composite [pre-alignment, deformable]
    OUT/displacement.nii.gz   bspline/demons/learned: ITK vector displacement field on FIXED's grid (mm, x y z,
                              LPS)
    OUT/metrics.json          method, metric, seconds (registration only, no I/O), metric before/after,
                              Jacobian statistics (deformable), Dice per label before/after (--fixed-labels),
                              inverse consistency, TRE before/after (--fixed-landmarks/--moving-landmarks)
    OUT/report.html           one self-contained report: inputs, method and settings, metrics, Jacobian summary,
                              inverse consistency, TRE, the figures (embedded)
    OUT/figures/*.png         checkerboard.png, difference.png, deformation_grid.png (bspline/demons): the middle
                              slice of FIXED's grid (2D images: the image)

Landmarks (``--fixed-landmarks F.csv --moving-landmarks M.csv``, single pairs only): one landmark per row, the
same count and order in both files, physical LPS coordinates in mm (ITK/DICOM world coordinates, as
``medimg info`` prints the origin). Either a header line naming columns ``x,y,z`` (other columns are ignored,
e.g. ``name,x,y,z``) or no header and exactly 3 numbers per row (2 for 2D images: ``x,y``). TRE "before" is
``|f - m|`` per landmark; "after" is ``|T(f) - m|``, with ``T`` the transform (fixed points -> moving points).

With ``--pairs PAIRS.csv`` (columns ``fixed``, ``moving``, optional ``moving_labels``, ``fixed_labels``,
``fixed_mask``, ``moving_mask``; relative paths are relative to the CSV's folder) every row is checked before
any registration (files exist and are readable images, labels and masks on their image's grid: a problem there
is one line, exit 2, nothing written), and each pair gets the files above in ``OUT/<fixed stem>__<moving stem>/``,
plus::

    OUT/summary.csv           one row per pair: folder, status (ok/failed), fixed, moving, method, metric, the
                              initialisation used, seconds, metric before/after, mean Dice before/after (labels
                              given), folding fraction (deformable), error (failed pairs)
    OUT/summary.json          the same rows with the settings, and the pairs' full metrics (or their error)

A pair whose registration fails (the optimiser leaves the moving image, an ITK error) does not stop the batch:
its row says ``failed`` with the one-line error, it gets no folder, and the other pairs go on. Exit code 0 when
every pair succeeded; 3 when some failed (OUT is still written, and stderr says "N of M pairs failed, see
OUT/summary.csv").

Repeatability: ``--threads 1`` (the default) gives bit-identical results run to run and machine to machine;
``--threads 0`` uses every core (faster on large images; ITK's multi-threaded sums then vary between runs).
``--init geometry`` (the default) falls back to ``moments`` when the optimiser leaves the moving field of view;
``params.init_used`` in metrics.json and the ``init`` column of summary.csv say which one a result comes from.

OUT is built in a temporary folder beside it and renamed at the end; it must not exist yet (or be empty).
"""

from __future__ import annotations

import argparse
from pathlib import Path

# the command's constants, from the library (light modules: no ITK or torch at import time)
from medimg.tasks.register.data import PAIR_COLUMNS, PAIR_OPTIONAL_COLUMNS, Pair  # noqa: F401
from medimg.tasks.register.pairs import METHODS

#: exit code of a --pairs batch in which some pairs failed (their rows say why; the others were written)
EXIT_SOME_FAILED = 3


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002 - argparse's own keyword
    p = subparsers.add_parser(
        "register", parents=parents, help=help,
        description="Register MOVING onto FIXED with SimpleITK (multi-resolution; Mattes MI, NCC or mean "
        "squares; rigid, affine, B-spline free-form or demons after an affine pre-alignment) and write "
        "OUT/warped.nii.gz, OUT/transform.tfm|.h5, OUT/displacement.nii.gz (deformable), "
        "OUT/warped_labels.nii.gz (--labels), OUT/metrics.json, OUT/report.html and OUT/figures/*.png; TRE with "
        "--fixed-landmarks/--moving-landmarks (LPS mm, header x,y,z or 3 numbers per row). Demons assumes the same "
        "modality. --method learned --model DIR uses a model trained by `medimg train register` (or a zoo name, "
        "e.g. hippocampus_registration): one network pass after a centre (or --prealign affine) pre-alignment. "
        "With --pairs PAIRS.csv (columns fixed, moving, optional moving_labels, fixed_labels, fixed_mask, "
        "moving_mask; paths relative to the CSV) every pair goes to OUT/<fixed stem>__<moving stem>/ and "
        "OUT/summary.csv and OUT/summary.json list them all; a pair that fails is recorded there (status, error) "
        "and the batch goes on (exit code 3 when some failed). --init geometry falls back to moments when the "
        "optimiser leaves the moving image; --threads 1 makes runs repeatable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("fixed", nargs="?", help="fixed (reference) image (not with --pairs)")
    p.add_argument("moving", nargs="?", help="moving image, registered onto FIXED (not with --pairs)")
    p.add_argument("-o", "--out", required=True, help="output folder (new or empty)")
    p.add_argument("--pairs", metavar="PAIRS.csv",
                   help="register many pairs: a CSV with columns fixed, moving (optional moving_labels, "
                   "fixed_labels, fixed_mask, moving_mask), paths relative to the CSV's folder")
    p.add_argument("--method", choices=METHODS, default="rigid", help="transform model")
    p.add_argument("--model", metavar="DIR", help="--method learned: a model folder trained by `medimg train "
                   "register`, or a zoo name (see `medimg models`); loaded once for all pairs")
    p.add_argument("--prealign", choices=("center", "affine"), default=None,
                   help="--method learned: pre-alignment before the network (default: the model's plan)")
    p.add_argument("--metric", choices=("mattes", "ncc", "meansquares"), default="mattes",
                   help="similarity: mattes (mutual information, any modality pair), ncc, meansquares")
    p.add_argument("--init", choices=("geometry", "moments", "none"), default="geometry",
                   help="initial alignment: image centres (falls back to moments when the optimiser leaves the "
                   "moving image), intensity centres of mass, or none")
    p.add_argument("--labels", metavar="MOVING_LABELS", help="label map on MOVING's grid to warp (nearest)")
    p.add_argument("--fixed-labels", metavar="FIXED_LABELS",
                   help="label map on FIXED's grid: Dice per label before and after, in metrics.json")
    p.add_argument("--fixed-mask", metavar="MASK", help="metric mask on FIXED's grid")
    p.add_argument("--moving-mask", metavar="MASK", help="metric mask on MOVING's grid")
    p.add_argument("--levels", default="4,2,1", help="shrink factors per resolution level, coarsest first")
    p.add_argument("--iterations", type=int, default=None,
                   help="maximum iterations per level (default: 200 rigid, 100 affine/bspline, 50 demons)")
    p.add_argument("--bspline-grid-mm", type=float, default=40.0,
                   help="B-spline control point spacing (mm)")
    p.add_argument("--sampling", type=float, default=0.2, help="fraction of fixed voxels sampled by the metric")
    p.add_argument("--seed", type=int, default=0, help="seed of the metric sampling (written to metrics.json)")
    p.add_argument("--threads", type=int, default=1, help="ITK threads: 1 gives bit-identical results run to run; "
                   "0 uses every core (faster on large images, not repeatable)")
    p.add_argument("--fixed-landmarks", metavar="F.csv",
                   help="landmarks in FIXED (LPS mm; header x,y,z, or 3 numbers per row): TRE before/after")
    p.add_argument("--moving-landmarks", metavar="M.csv",
                   help="the corresponding landmarks in MOVING, same count and order as --fixed-landmarks")


def _options(args: argparse.Namespace):
    """The library's settings from the flags (checked there: one line naming the flag)."""
    from medimg.tasks.register.pairs import RegisterOptions, parse_levels

    return RegisterOptions(method=args.method, metric=args.metric, init=args.init, levels=parse_levels(args.levels),
                           iterations=args.iterations, bspline_grid_mm=args.bspline_grid_mm, sampling=args.sampling,
                           seed=args.seed, threads=args.threads, model=args.model, prealign=args.prealign,
                           precision=getattr(args, "precision", "auto"))


def _check_args(args: argparse.Namespace, options) -> None:
    """What only the command line can get wrong: FIXED MOVING against --pairs, flags that need each other."""
    from medimg.core.errors import InvalidParameterError
    from medimg.tasks.register.data import check_landmarks

    if options.method == "learned":
        for flag, value in (("--fixed-mask", args.fixed_mask), ("--moving-mask", args.moving_mask)):
            if value:
                raise InvalidParameterError(f"{flag} is not used by --method learned", parameter=flag,
                                            expected="no metric masks (the network sees the whole images)",
                                            found=value, fix=f"leave {flag} out, or use a classical method")
    if args.pairs:
        given = [n for n, v in (("FIXED/MOVING", args.fixed or args.moving), ("--labels", args.labels),
                                ("--fixed-labels", args.fixed_labels), ("--fixed-mask", args.fixed_mask),
                                ("--moving-mask", args.moving_mask), ("--fixed-landmarks", args.fixed_landmarks),
                                ("--moving-landmarks", args.moving_landmarks)) if v]
        if given:
            raise InvalidParameterError(f"{given[0]} cannot be given with --pairs", parameter="--pairs",
                                        expected="either FIXED MOVING or --pairs PAIRS.csv",
                                        found=f"--pairs and {', '.join(given)}",
                                        fix="put the files into the CSV (columns fixed, moving, moving_labels, "
                                        "fixed_labels, fixed_mask, moving_mask; landmarks are for single pairs) "
                                        "or drop --pairs")
        return
    if not (args.fixed and args.moving):
        raise InvalidParameterError("FIXED and MOVING are needed", parameter="FIXED MOVING",
                                    expected="two image paths, or --pairs PAIRS.csv",
                                    found="one path" if args.fixed else "none",
                                    fix="write medimg register FIXED MOVING -o OUT")
    if args.fixed_labels and not args.labels:
        raise InvalidParameterError("--fixed-labels needs --labels", parameter="--fixed-labels",
                                    expected="--labels MOVING_LABELS too", found="only --fixed-labels",
                                    fix="give the moving image's label map with --labels")
    if bool(args.fixed_landmarks) != bool(args.moving_landmarks):
        given, other = (("--fixed-landmarks", "--moving-landmarks") if args.fixed_landmarks
                        else ("--moving-landmarks", "--fixed-landmarks"))
        raise InvalidParameterError(f"{given} needs {other}", parameter=other, expected="both landmark files",
                                    found=f"only {given}", fix=f"give the corresponding landmarks with {other}")
    if args.fixed_landmarks:
        check_landmarks(args.fixed_landmarks, args.moving_landmarks)


def run(args: argparse.Namespace) -> int:
    from medimg.io.files import atomic_output_dir, check_input
    from medimg.tasks.register.pairs import register_pair

    options = _options(args)
    _check_args(args, options)
    model = options.load_model()  # --method learned: loaded once, before any output exists
    if args.pairs:
        return _run_pairs(args, options, model)
    pair = Pair(fixed=args.fixed, moving=args.moving, moving_labels=args.labels, fixed_labels=args.fixed_labels,
                fixed_mask=args.fixed_mask, moving_mask=args.moving_mask, fixed_landmarks=args.fixed_landmarks,
                moving_landmarks=args.moving_landmarks)
    for p in pair.inputs():
        check_input(p, allow_dir=True)
    with atomic_output_dir(args.out, inputs=pair.inputs()) as tmp:
        result = register_pair(pair, options, model=model)
        result.write(tmp)
    if not args.quiet:
        for line in result.summary_lines():
            print(line)
        print(f"wrote {args.out}: {', '.join(result.output_names())}")
    return 0


def _run_pairs(args: argparse.Namespace, options, model) -> int:
    import shutil
    import sys

    from medimg.core.errors import MedimgError
    from medimg.io.files import atomic_output_dir
    from medimg.tasks.register.data import load_pair, read_pairs
    from medimg.tasks.register.pairs import register_images
    from medimg.tasks.register.writer import failed_row, pair_lines, summary_row, write_summary

    pairs = read_pairs(args.pairs)
    # every pair's files are read and checked before any registration: a bad row is exit 2 with nothing written
    for pair in pairs:
        load_pair(pair)
    inputs = [args.pairs] + [p for pair in pairs for p in pair.inputs()]
    rows, metrics = [], []
    failed = 0
    with atomic_output_dir(args.out, inputs=inputs) as tmp:
        for i, pair in enumerate(pairs, 1):
            prefix = f"[{i}/{len(pairs)}] {pair.folder()}: "
            try:
                data = load_pair(pair)
                result = register_images(data.fixed, data.moving, options, labels=data.labels,
                                         fixed_labels=data.fixed_labels, fixed_mask=data.fixed_mask,
                                         moving_mask=data.moving_mask, landmarks=data.landmarks, model=model,
                                         pair=pair)
                result.write(tmp / pair.folder())
            except MedimgError as exc:
                # this pair failed to register: record it and go on with the others
                shutil.rmtree(tmp / pair.folder(), ignore_errors=True)
                error = str(exc)[len(pair.where):] if str(exc).startswith(pair.where) else str(exc)
                failed += 1
                rows.append(failed_row(pair, options, error))
                metrics.append({"pair": pair.folder(), "status": "failed", "fixed": pair.fixed,
                                "moving": pair.moving, "error": error})
                print(f"medimg register: {prefix}failed: {error}", file=sys.stderr)
                continue
            m = result.metrics_dict()
            rows.append(summary_row(pair.folder(), m))
            metrics.append({"pair": pair.folder(), "status": "ok", **m})
            if not args.quiet:
                for line in pair_lines(m, prefix=prefix):
                    print(line)
        write_summary(tmp, rows, metrics, pairs_csv=args.pairs, options=options)
    if not args.quiet:
        print(f"wrote {args.out}: {len(pairs) - failed} pair folder(s), summary.csv, summary.json")
    if failed:
        print(f"medimg register: {failed} of {len(pairs)} pairs failed, see {Path(args.out) / 'summary.csv'}",
              file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_METHODS = ("rigid", "affine", "bspline", "demons", "diffeomorphic-demons", "learned")
#: columns of a --pairs CSV: required, then optional (CSV column -> Pair field)
PAIR_COLUMNS = ("fixed", "moving")
PAIR_OPTIONAL_COLUMNS = ("moving_labels", "fixed_labels", "fixed_mask", "moving_mask")
SUMMARY_COLUMNS = ("pair", "status", "fixed", "moving", "method", "metric", "init", "seconds", "metric_before",
                   "metric_after", "dice_before", "dice_after", "folding_fraction", "error")
#: exit code of a --pairs batch in which some pairs failed (their rows say why; the others were written)
EXIT_SOME_FAILED = 3


@dataclass(frozen=True)
class Pair:
    """One registration job: file paths (as given on the command line or resolved from the CSV)."""

    fixed: str
    moving: str
    moving_labels: str | None = None
    fixed_labels: str | None = None
    fixed_mask: str | None = None
    moving_mask: str | None = None
    where: str = ""  # "PAIRS.csv line 3: " for CSV rows, "" on the command line

    fixed_landmarks: str | None = None
    moving_landmarks: str | None = None

    def inputs(self) -> list[str]:
        return [p for p in (self.fixed, self.moving, self.moving_labels, self.fixed_labels, self.fixed_mask,
                            self.moving_mask, self.fixed_landmarks, self.moving_landmarks) if p]

    def folder(self) -> str:
        return f"{_stem(self.fixed)}__{_stem(self.moving)}"


def _stem(path: str) -> str:
    from medimg.io.files import compound_suffix

    name = Path(path).name
    ext = compound_suffix(name)
    return name[: len(name) - len(ext)] if ext else name


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
    p.add_argument("--method", choices=_METHODS, default="rigid", help="transform model")
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
    from medimg.classical.registration_checks import check_on_grid
    from medimg.core.errors import InvalidParameterError

    try:
        check_on_grid(image, other, image_name, option)
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


# ---- landmarks -------------------------------------------------------------------------------------------------
def read_landmarks(path: str, option: str):
    """Read a landmark CSV into an (N, 2 or 3) float array (LPS mm), one row per landmark.

    Accepted: a header line with columns ``x``, ``y`` (and ``z``) (case-insensitive; other columns ignored),
    or no header and 2 or 3 numbers per row. Blank lines and lines starting with ``#`` are skipped.

    Raises:
        ImageReadError: the file is missing or not UTF-8 text.
        InvalidParameterError (naming ``option`` and the file): no rows, a non-numeric cell, a row with another
            number of columns, a header without x and y columns.
    """
    import csv

    import numpy as np

    from medimg.core.errors import InvalidParameterError

    text = _read_text(path, "landmark file")
    fmt = "a header x,y,z and one landmark per row, or 3 numbers per row without header (LPS mm)"

    def bad(what: str, found: Any, fix: str) -> InvalidParameterError:
        return InvalidParameterError(what, path=path, parameter=option, expected=fmt, found=found, fix=fix)

    rows = [(n, [c.strip() for c in r]) for n, r in enumerate(csv.reader(text.splitlines()), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise bad("the landmark file has no rows", "an empty file", "write one landmark per row")

    def numbers(cells: list[str]) -> list[float] | None:
        try:
            return [float(c) for c in cells]
        except ValueError:
            return None

    columns: list[int] | None = None
    first_line, first = rows[0]
    if numbers(first) is None:  # a header
        names = [c.lower() for c in first]
        if "x" not in names or "y" not in names:
            raise bad("the landmark header has no x and y columns", f"header {','.join(first)}",
                      "name the coordinate columns x,y,z")
        columns = [names.index(a) for a in ("x", "y", "z") if a in names]
        rows = rows[1:]
        if not rows:
            raise bad("the landmark file has no rows", "only a header", "add one landmark per row")
    width = None
    points = []
    for line, cells in rows:
        if columns is not None:
            if len(cells) <= max(columns):
                raise bad(f"line {line}: too few columns", f"{len(cells)} column(s)",
                          f"give a value for every header column on line {line}")
            cells = [cells[i] for i in columns]
        elif len(cells) not in (2, 3) or (width is not None and len(cells) != width):
            raise bad(f"line {line}: {len(cells)} columns", f"{len(cells)} column(s): {','.join(cells)[:60]}",
                      f"give x,y,z on line {line} (or add a header x,y,z)")
        width = len(cells)
        vals = numbers(cells)
        if vals is None or not all(np.isfinite(vals)):
            raise bad(f"line {line}: a coordinate is not a number", repr(",".join(cells)[:60]),
                      f"correct line {line} (numbers in mm, '.' as decimal point)")
        points.append(vals)
    return np.asarray(points, dtype=float)


def _check_landmarks(fixed_path: str, moving_path: str):
    """Both landmark files, checked against each other; the (N, D) arrays."""
    from medimg.core.errors import InvalidParameterError

    f = read_landmarks(fixed_path, "--fixed-landmarks")
    m = read_landmarks(moving_path, "--moving-landmarks")
    if f.shape != m.shape:
        what = "different numbers of landmarks" if len(f) != len(m) else "different numbers of coordinates"
        raise InvalidParameterError(what, path=moving_path, parameter="--moving-landmarks",
                                    expected=f"{len(f)} rows of {f.shape[1]} coordinates like {fixed_path}",
                                    found=f"{len(m)} rows of {m.shape[1]} coordinates",
                                    fix="give corresponding landmarks, one per row, in the same order in both files")
    return f, m


def _landmarks_for(points, dim: int, option: str, path: str):
    from medimg.core.errors import InvalidParameterError

    if points.shape[1] < dim:
        raise InvalidParameterError(f"{dim}D images need {dim} coordinates per landmark", path=path,
                                    parameter=option, expected="x,y,z columns", found=f"{points.shape[1]} columns",
                                    fix="add the z coordinate (LPS mm)")
    return points[:, :dim]


def landmark_tre(transform, fixed_points, moving_points) -> dict[str, Any]:
    """TRE before (identity) and after (``|T(f) - m|``) per landmark, with mean, median and max (mm)."""
    import numpy as np

    from medimg.metrics.registration import target_registration_error

    mapped = np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in fixed_points])
    before = target_registration_error(fixed_points, moving_points)
    after = target_registration_error(mapped, moving_points)

    def stats(v):
        return {"mean": float(np.mean(v)), "median": float(np.median(v)), "max": float(np.max(v))}

    return {"n": int(len(before)), "before_mm": stats(before), "after_mm": stats(after),
            "per_landmark": [{"index": i, "before_mm": float(b), "after_mm": float(a)}
                             for i, (b, a) in enumerate(zip(before, after))],
            "definition": "before: |f - m|; after: |T(f) - m|, T the transform (fixed points -> moving), LPS mm"}


# ---- the pairs CSV ---------------------------------------------------------------------------------------------
def _pairs_error(what: str, csv_path: str, *, expected: Any = None, found: Any = None, fix: str):
    from medimg.core.errors import InvalidParameterError

    return InvalidParameterError(what, path=csv_path, parameter="--pairs", expected=expected, found=found, fix=fix)


def read_pairs(csv_path: str) -> list[Pair]:
    """Read and check a pairs CSV: columns, every file of every row, no self-pairs, distinct output folders.

    Raises:
        ImageReadError: the CSV is missing or unreadable.
        InvalidParameterError: no rows, a missing or unknown column, an empty cell in a required column, a
            missing input file (its line named), a pair registering a file to itself, two rows with the same
            output folder, fixed_labels without moving_labels.
    """
    import csv

    from medimg.core.errors import MedimgError
    from medimg.io.files import check_input, same_path

    p = check_input(csv_path, allow_dir=False)
    text = _read_text(p, "pairs CSV")
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or []) if h is not None]
    if not header:
        raise _pairs_error("the pairs CSV is empty", csv_path, expected="a header line 'fixed,moving' and rows",
                           found="no header", fix="write a header line fixed,moving and one row per pair")
    missing = [c for c in PAIR_COLUMNS if c not in header]
    if missing:
        raise _pairs_error(f"the pairs CSV lacks the column(s) {', '.join(missing)}", csv_path,
                           expected=f"columns {', '.join(PAIR_COLUMNS)} (optional: {', '.join(PAIR_OPTIONAL_COLUMNS)})",
                           found=f"columns {', '.join(header)}", fix="name the header columns fixed,moving")
    unknown = [c for c in header if c not in PAIR_COLUMNS + PAIR_OPTIONAL_COLUMNS]
    if unknown:
        raise _pairs_error(f"unknown column(s) {', '.join(unknown)} in the pairs CSV", csv_path,
                           expected=f"only {', '.join(PAIR_COLUMNS + PAIR_OPTIONAL_COLUMNS)}",
                           found=f"columns {', '.join(header)}", fix="rename or remove the other columns")
    base = p.parent
    pairs: list[Pair] = []
    folders: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cells.values()):
            continue  # blank line
        where = f"{csv_path} line {line}: "
        for col in PAIR_COLUMNS:
            if not cells.get(col):
                raise _pairs_error(f"line {line}: empty '{col}' cell", csv_path, expected="a file path",
                                   found="nothing", fix=f"fill in the {col} image of line {line} or remove the line")
        paths: dict[str, str | None] = {}
        for col in PAIR_COLUMNS + PAIR_OPTIONAL_COLUMNS:
            value = cells.get(col)
            if not value:
                paths[col] = None
                continue
            full = Path(value) if Path(value).is_absolute() else base / value
            try:
                check_input(full, allow_dir=True)
            except MedimgError as exc:
                raise _pairs_error(f"line {line}: {col} '{value}': {exc.what}", csv_path,
                                   expected="an existing image file (relative to the CSV's folder)",
                                   found=str(full), fix=f"correct the {col} path on line {line}") from exc
            paths[col] = str(full)
        if same_path(paths["fixed"], paths["moving"]):
            raise _pairs_error(f"line {line}: the pair registers a file to itself", csv_path,
                               expected="two different files", found=f"fixed = moving = {cells['fixed']}",
                               fix=f"correct or remove line {line}")
        if paths["fixed_labels"] and not paths["moving_labels"]:
            raise _pairs_error(f"line {line}: fixed_labels needs moving_labels", csv_path,
                               expected="moving_labels too", found="only fixed_labels",
                               fix=f"add the moving image's label map on line {line}")
        pair = Pair(fixed=paths["fixed"], moving=paths["moving"], moving_labels=paths["moving_labels"],
                    fixed_labels=paths["fixed_labels"], fixed_mask=paths["fixed_mask"],
                    moving_mask=paths["moving_mask"], where=where)  # type: ignore[arg-type]
        if pair.folder() in folders:
            raise _pairs_error(f"lines {folders[pair.folder()]} and {line} give the same output folder "
                               f"{pair.folder()}", csv_path, expected="distinct fixed/moving file names per pair",
                               found="a repeated pair (or files with the same names in different folders)",
                               fix="remove the repeated line or rename the files")
        folders[pair.folder()] = line
        pairs.append(pair)
    if not pairs:
        raise _pairs_error("the pairs CSV has no rows", csv_path, expected="at least one fixed,moving row",
                           found="only a header", fix="add one line per pair")
    return pairs


# ---- one pair --------------------------------------------------------------------------------------------------
def _check_geometry(image, path: str, option: str) -> None:
    """Spacing finite and > 0, a finite invertible direction: otherwise one line naming the file."""
    import numpy as np

    from medimg.core.errors import InvalidParameterError

    g = image.geometry
    spacing = np.asarray(g.spacing, float)
    direction = np.asarray(g.direction, float)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InvalidParameterError("invalid voxel spacing", path=path, parameter=option,
                                    expected="finite spacing > 0 mm on every axis", found=tuple(spacing.tolist()),
                                    fix="correct the spacing in the file's header (medimg info shows it)")
    if not (np.all(np.isfinite(direction)) and np.all(np.isfinite(np.asarray(g.origin, float)))
            and abs(float(np.linalg.det(direction))) > 1e-6):
        raise InvalidParameterError("invalid orientation", path=path, parameter=option,
                                    expected="a finite origin and an invertible direction matrix",
                                    found=f"direction {direction.round(3).tolist()}",
                                    fix="correct the orientation in the file's header (medimg info shows it)")


def _load_pair(pair: Pair) -> dict[str, Any]:
    """Read a pair's images and check them against each other (grids, spacing, landmarks).

    Raises MedimgError with the CSV line in front of the message for --pairs rows.
    """
    from medimg.core.errors import MedimgError

    try:
        fixed, moving = _read(pair.fixed), _read(pair.moving)
        _check_geometry(fixed, pair.fixed, "FIXED")
        _check_geometry(moving, pair.moving, "MOVING")
        labels = _read(pair.moving_labels, kind="label") if pair.moving_labels else None
        fixed_labels = _read(pair.fixed_labels, kind="label") if pair.fixed_labels else None
        fixed_mask = _read(pair.fixed_mask, kind="label") if pair.fixed_mask else None
        moving_mask = _read(pair.moving_mask, kind="label") if pair.moving_mask else None
        for image, other, name, option, path in (
            (moving, labels, "moving", "--labels", pair.moving_labels),
            (fixed, fixed_labels, "fixed", "--fixed-labels", pair.fixed_labels),
            (fixed, fixed_mask, "fixed", "--fixed-mask", pair.fixed_mask),
            (moving, moving_mask, "moving", "--moving-mask", pair.moving_mask),
        ):
            if other is not None:
                _on_grid(image, other, name, option, path)
        landmarks = None
        if pair.fixed_landmarks and pair.moving_landmarks:
            f_pts, m_pts = _check_landmarks(pair.fixed_landmarks, pair.moving_landmarks)
            dim = 2 if fixed.is_2d else 3
            landmarks = (_landmarks_for(f_pts, dim, "--fixed-landmarks", pair.fixed_landmarks),
                         _landmarks_for(m_pts, dim, "--moving-landmarks", pair.moving_landmarks))
    except MedimgError as exc:
        _name_line(exc, pair)
        raise
    return {"fixed": fixed, "moving": moving, "labels": labels, "fixed_labels": fixed_labels,
            "fixed_mask": fixed_mask, "moving_mask": moving_mask, "landmarks": landmarks}


def _name_line(exc: BaseException, pair: Pair) -> None:
    """Put "PAIRS.csv line N: " in front of the message of an error about a --pairs row."""
    if pair.where and not str(exc).startswith(pair.where):
        exc.args = (pair.where + str(exc),)


def register_pair(pair: Pair, args: argparse.Namespace, dest: Path,
                  loaded: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register one pair with the command's settings and write its output contract into ``dest``.

    ``dest`` is created only once the registration succeeded. Returns the pair's metrics (what
    ``dest/metrics.json`` holds).
    """
    import json
    import time

    import SimpleITK as sitk

    from medimg import __version__
    from medimg.classical.registration import (
        displacement_field,
        inverse_consistency,
        is_deformable,
        jacobian_summary,
        register,
        registration_figures,
        save_transform,
        warp,
    )
    from medimg.core.errors import MedimgError
    from medimg.io import write
    from medimg.io.sitk_bridge import to_sitk

    method = args.method.replace("-", "_")
    data = loaded if loaded is not None else _load_pair(pair)
    fixed, moving, labels = data["fixed"], data["moving"], data["labels"]
    fixed_labels, landmarks = data["fixed_labels"], data["landmarks"]
    try:
        if method == "learned":
            result = args.learned_model.register(fixed, moving, prealign=args.prealign, seed=args.seed)
        else:
            result = register(fixed, moving, method=method, metric=args.metric, init=args.init,
                              fixed_mask=data["fixed_mask"], moving_mask=data["moving_mask"],
                              levels=_levels(args.levels), iterations=args.iterations,
                              bspline_grid_mm=args.bspline_grid_mm, sampling_fraction=args.sampling,
                              seed=args.seed, threads=args.threads)
    except MedimgError as exc:
        _name_line(exc, pair)
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
    transform_name = "transform.h5" if deformable else "transform.tfm"
    dest.mkdir(parents=True, exist_ok=True)
    write(result.warped, dest / "warped.nii.gz")
    if warped_labels is not None:
        write(warped_labels, dest / "warped_labels.nii.gz")
    save_transform(result.transform, dest / transform_name)
    if field is not None:
        # an ITK vector image (NIfTI intent "vector"), as ITK, ANTs and 3D Slicer read displacement fields
        sitk.WriteImage(to_sitk(field), str(dest / "displacement.nii.gz"), useCompression=True)
    _write_figures(figures, dest / "figures")
    summary["outputs"] = sorted(p.name for p in dest.iterdir()) + ["metrics.json", "report.html"]
    (dest / "report.html").write_text(_report_html(summary, figures, fixed, moving), encoding="utf-8")
    summary["seconds_postprocess"] = time.perf_counter() - t0
    (dest / "metrics.json").write_text(json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n",
                                       encoding="utf-8")
    return summary


def _figure_name(caption: str) -> str:
    return caption.replace(" ", "_") + ".png"


def _write_figures(figures: dict[str, Any], folder: Path) -> None:
    from medimg.report.html import png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    for caption, rgb in figures.items():
        (folder / _figure_name(caption)).write_bytes(png_bytes(rgb))


def _report_html(m: dict[str, Any], figures: dict[str, Any], fixed, moving) -> str:
    """The pair's report.html: inputs, method and settings, metrics, Jacobian, inverse consistency, TRE, figures."""
    import json

    import SimpleITK as sitk

    from medimg import __version__
    from medimg.report.html import ReportSection, render_html

    def image_items(image) -> dict[str, Any]:
        return {"shape (Z, Y, X)": list(image.spatial_shape), "spacing (mm)": list(image.geometry.spacing),
                "origin (mm, LPS)": list(image.geometry.origin)}

    inputs: dict[str, Any] = {"fixed": m["fixed"], **{f"fixed {k}": v for k, v in image_items(fixed).items()},
                              "moving": m["moving"], **{f"moving {k}": v for k, v in image_items(moving).items()}}
    for key in ("labels", "fixed_labels", "fixed_landmarks", "moving_landmarks"):
        if m.get(key):
            inputs[key.replace("_", " ")] = m[key]
    params = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in m["params"].items()}
    sections = [
        ReportSection("Inputs", items=inputs),
        ReportSection("Method and settings", text=f"{m['method']} registration ({m['transform_type']}), "
                      f"metric {m['metric']}. The transform maps fixed points (LPS mm) into the moving image.",
                      items=params),
    ]
    metrics: dict[str, Any] = {"metric before": m["metric_before"], "metric after": m["metric_after"],
                               "iterations": m["iterations"], "seconds (registration only)": m["seconds"],
                               "stop condition": m["stop_condition"]}
    if "dice" in m:
        metrics["mean Dice before"] = m["dice"]["mean_before"]
        metrics["mean Dice after"] = m["dice"]["mean_after"]
    records = [{"label": k, "Dice before": v["before"], "Dice after": v["after"]}
               for k, v in (m.get("dice") or {}).get("per_label", {}).items()]
    sections.append(ReportSection("Metrics", text="Lower is better for all similarity metrics (ITK negates NCC "
                                  "and mutual information). Dice before: moving labels on the fixed grid without "
                                  "any transform." if "dice" in m else "Lower is better for all similarity "
                                  "metrics (ITK negates NCC and mutual information).", items=metrics,
                                  records=records))
    if "jacobian" in m:
        sections.append(ReportSection("Jacobian determinant", text="Determinant of the Jacobian of T over the "
                                      "fixed grid; det <= 0 is folding.", items=m["jacobian"]))
    ic = dict(m["inverse_consistency"])
    sections.append(ReportSection("Inverse consistency", text=ic.pop("definition"), items=ic))
    if "tre" in m:
        t = m["tre"]
        sections.append(ReportSection(
            "Target registration error", text=f"{t['n']} landmarks. {t['definition']}.",
            items={f"{k} {s} (mm)": t[f"{k}_mm"][s] for k in ("before", "after") for s in ("mean", "median", "max")},
            records=t["per_landmark"]))
    sections.append(ReportSection("Figures", text="Middle slice of the fixed grid (2D images: the image); also in "
                                  "figures/.", figures=figures))
    sections.append(ReportSection("Outputs", items={name: "" for name in m["outputs"]}))
    return render_html(f"Registration: {Path(m['moving']).name} onto {Path(m['fixed']).name}", sections,
                       software={"medimg": __version__, "SimpleITK": sitk.Version.VersionString()})


def _summary_row(folder: str, m: dict[str, Any]) -> dict[str, Any]:
    dice = m.get("dice") or {}
    params = m.get("params") or {}
    return {"pair": folder, "status": "ok", "fixed": m["fixed"], "moving": m["moving"], "method": m["method"],
            "metric": m["metric"], "init": params.get("init_used", params.get("init")), "seconds": m["seconds"],
            "metric_before": m["metric_before"], "metric_after": m["metric_after"],
            "dice_before": dice.get("mean_before"), "dice_after": dice.get("mean_after"),
            "folding_fraction": (m.get("jacobian") or {}).get("folding_fraction"), "error": None}


def _failed_row(pair: Pair, args: argparse.Namespace, error: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(pair=pair.folder(), status="failed", fixed=pair.fixed, moving=pair.moving,
               method=args.method.replace("-", "_"), metric=args.metric if args.method != "learned" else None,
               error=error)
    return row


def _print_pair(m: dict[str, Any], prefix: str = "") -> None:
    print(f"{prefix}{m['method']} ({m['metric']}): metric {m['metric_before']:.5g} -> {m['metric_after']:.5g} in "
          f"{m['seconds']:.2f} s, {m['iterations']} iterations")
    fallback = (m.get("params") or {}).get("init_fallback")
    if fallback:
        print(f"{prefix}note: {fallback}")
    if "jacobian" in m:
        j = m["jacobian"]
        print(f"{prefix}Jacobian: folding fraction {j['folding_fraction']:.4g}, std log-Jacobian "
              f"{j['std_log_jacobian']:.4g}")
    ic = m["inverse_consistency"]
    print(f"{prefix}inverse consistency: mean {ic['mean_mm']:.3g} mm, max {ic['max_mm']:.3g} mm")
    if "tre" in m:
        t = m["tre"]
        print(f"{prefix}TRE over {t['n']} landmarks: mean {t['before_mm']['mean']:.3f} -> {t['after_mm']['mean']:.3f}"
              f" mm, max {t['before_mm']['max']:.3f} -> {t['after_mm']['max']:.3f} mm")
    if "dice" in m:
        print(f"{prefix}mean Dice over {len(m['dice']['per_label'])} labels: {m['dice']['mean_before']:.4f}"
              f" -> {m['dice']['mean_after']:.4f}")


# ---- the command -----------------------------------------------------------------------------------------------
def _check_args(args: argparse.Namespace) -> None:
    import math

    from medimg.core.errors import InvalidParameterError

    _levels(args.levels)
    for flag, value in (("--bspline-grid-mm", args.bspline_grid_mm), ("--sampling", args.sampling)):
        if not (math.isfinite(value) and value > 0):
            raise InvalidParameterError("not a finite number > 0", parameter=flag,
                                        expected="a finite number > 0" + (" (mm)" if "mm" in flag else ""),
                                        found=value, fix=f"give e.g. {flag} {'40' if 'mm' in flag else '0.2'}")
    if args.threads < 0:
        raise InvalidParameterError("invalid number of threads", parameter="--threads",
                                    expected="an integer >= 0 (0: every core)", found=args.threads,
                                    fix="give --threads 1 for repeatable results")
    if args.method == "learned" and not args.model:
        raise InvalidParameterError("--method learned needs --model", parameter="--model",
                                    expected="a model folder trained by `medimg train register`, or a zoo name",
                                    found="no --model", fix="add --model hippocampus_registration (see `medimg "
                                    "models`) or --model MODEL_DIR")
    for flag, value in (("--model", args.model), ("--prealign", args.prealign)):
        if value and args.method != "learned":
            raise InvalidParameterError(f"{flag} applies to --method learned only", parameter=flag,
                                        expected="--method learned", found=f"--method {args.method}",
                                        fix=f"add --method learned, or leave {flag} out")
    if args.method == "learned":
        classical = (("--metric", args.metric, "mattes"), ("--init", args.init, "geometry"),
                     ("--levels", args.levels, "4,2,1"), ("--iterations", args.iterations, None),
                     ("--bspline-grid-mm", args.bspline_grid_mm, 40.0), ("--sampling", args.sampling, 0.2),
                     ("--threads", args.threads, 1))
        for flag, value, default in classical:
            if value != default:
                raise InvalidParameterError(f"{flag} is a setting of the classical methods", parameter=flag,
                                            expected="no classical settings with --method learned (the model's "
                                            "plan.json fixes the learned method's)", found=f"{flag} {value}",
                                            fix=f"leave {flag} out, or use a classical method")
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
        _check_landmarks(args.fixed_landmarks, args.moving_landmarks)


def _load_model(args: argparse.Namespace) -> None:
    """--method learned: load the model once (before any output exists), kept on ``args.learned_model``."""
    args.learned_model = None
    if args.method == "learned":
        from medimg.tasks.register.predict import LearnedRegistration

        args.learned_model = LearnedRegistration.load(args.model)


def run(args: argparse.Namespace) -> int:
    from medimg.io.files import atomic_output_dir, check_input

    _check_args(args)
    _load_model(args)
    if args.pairs:
        return _run_pairs(args)
    pair = Pair(fixed=args.fixed, moving=args.moving, moving_labels=args.labels, fixed_labels=args.fixed_labels,
                fixed_mask=args.fixed_mask, moving_mask=args.moving_mask, fixed_landmarks=args.fixed_landmarks,
                moving_landmarks=args.moving_landmarks)
    for p in pair.inputs():
        check_input(p, allow_dir=True)
    with atomic_output_dir(args.out, inputs=pair.inputs()) as tmp:
        summary = register_pair(pair, args, tmp)
    if not args.quiet:
        _print_pair(summary)
        print(f"wrote {args.out}: {', '.join(summary['outputs'])}")
    return 0


def _run_pairs(args: argparse.Namespace) -> int:
    import json
    import shutil
    import sys

    from medimg import __version__
    from medimg.core.errors import MedimgError
    from medimg.io.csv_safe import rows_to_text
    from medimg.io.files import atomic_output_dir

    pairs = read_pairs(args.pairs)
    # every pair's files are read and checked before any registration: a bad row is exit 2 with nothing written
    for pair in pairs:
        _load_pair(pair)
    inputs = [args.pairs] + [p for pair in pairs for p in pair.inputs()]
    rows, metrics = [], []
    failed = 0
    with atomic_output_dir(args.out, inputs=inputs) as tmp:
        for i, pair in enumerate(pairs, 1):
            prefix = f"[{i}/{len(pairs)}] {pair.folder()}: "
            try:
                m = register_pair(pair, args, tmp / pair.folder())
            except MedimgError as exc:
                # this pair failed to register: record it and go on with the others
                shutil.rmtree(tmp / pair.folder(), ignore_errors=True)
                error = str(exc)[len(pair.where):] if str(exc).startswith(pair.where) else str(exc)
                failed += 1
                rows.append(_failed_row(pair, args, error))
                metrics.append({"pair": pair.folder(), "status": "failed", "fixed": pair.fixed,
                                "moving": pair.moving, "error": error})
                print(f"medimg register: {prefix}failed: {error}", file=sys.stderr)
                continue
            rows.append(_summary_row(pair.folder(), m))
            metrics.append({"pair": pair.folder(), "status": "ok", **m})
            if not args.quiet:
                _print_pair(m, prefix=prefix)
        (tmp / "summary.csv").write_text(rows_to_text(rows, SUMMARY_COLUMNS), encoding="utf-8")
        doc = {"medimg_version": __version__, "pairs_csv": args.pairs, "n_pairs": len(pairs), "n_failed": failed,
               "settings": {"method": args.method.replace("-", "_"), "metric": args.metric, "init": args.init,
                            "model": args.model, "prealign": args.prealign,
                            "levels": list(_levels(args.levels)), "iterations": args.iterations,
                            "bspline_grid_mm": args.bspline_grid_mm, "sampling_fraction": args.sampling,
                            "seed": args.seed, "threads": args.threads},
               "columns": list(SUMMARY_COLUMNS), "rows": rows, "pairs": metrics}
        (tmp / "summary.json").write_text(json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n",
                                          encoding="utf-8")
    if not args.quiet:
        print(f"wrote {args.out}: {len(pairs) - failed} pair folder(s), summary.csv, summary.json")
    if failed:
        print(f"medimg register: {failed} of {len(pairs)} pairs failed, see {Path(args.out) / 'summary.csv'}",
              file=sys.stderr)
        return EXIT_SOME_FAILED
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


def _read_text(path: Any, what: str) -> str:
    """The text of a small UTF-8 CSV input (BOM allowed), or one clear error naming the file."""
    from medimg.core.errors import ImageReadError
    from medimg.io.files import check_input

    p = check_input(path, allow_dir=False)
    try:
        return p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageReadError(f"cannot read the {what}", path=p, expected="a UTF-8 CSV text file",
                             found=f"{type(exc).__name__}: {exc}", fix="save it as UTF-8 CSV") from exc

"""Registration data: the datasets training draws pairs from, and the files of the pairs ``medimg register`` reads.

A registration dataset is a set of images of one kind (and, optionally, their label maps): an nnU-Net raw folder
(``dataset.json`` + ``imagesTr/`` + ``labelsTr/``), the 2D ``images/`` + ``masks/`` layout, or a plain folder of
images (NIfTI, NRRD, MHA; no labels). Pairs are drawn from it at training time (:class:`RegDataset`).

``medimg register`` reads one pair (FIXED MOVING and optional label maps, masks and landmarks) or a pairs CSV
(:func:`read_pairs`); :func:`load_pair` reads a pair's files and checks them against each other, and
:func:`read_landmarks` reads a landmark CSV.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image

logger = logging.getLogger(__name__)

__all__ = ["RegDataset", "check_pair_image", "Pair", "PairImages", "PAIR_COLUMNS", "PAIR_OPTIONAL_COLUMNS",
           "read_pairs", "load_pair", "read_landmarks", "check_landmarks"]

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class RegDataset:
    """Images (and label maps when the layout has them) to draw registration pairs from.

    Attributes:
        root: the folder. layout: "nnunet", "2d" or "images". cases: ids, sorted. dims: 2 or 3.
        has_labels: whether label maps exist. label_values: the labels (0 first) when declared.
    """

    root: Path
    layout: str
    cases: list[str]
    dims: int
    has_labels: bool
    label_values: tuple[int, ...]
    _seg: Any = None
    _files: dict[str, Path] | None = None

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> RegDataset:
        """Open a dataset folder (see the module text for the layouts).

        Raises:
            ImageReadError: no such folder, or a folder with neither layout nor image files.
        """
        from medimg.tasks.segment.data import SegDataset

        path = Path(root).expanduser()
        if not path.is_dir():
            raise ImageReadError("dataset folder not found", path=path, expected="a folder",
                                 found="a file" if path.exists() else "no such folder",
                                 fix="give a folder of images, or an nnU-Net raw folder (dataset.json + imagesTr/)")
        if (path / "dataset.json").is_file() or ((path / "images").is_dir() and
                                                  any((path / n).is_dir() for n in ("masks", "labels"))):
            seg = SegDataset.open(path)
            values = tuple(int(v) for v in seg.label_values)
            return cls(root=path, layout=seg.layout, cases=list(seg.cases), dims=seg.dims, has_labels=True,
                       label_values=values, _seg=seg)
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(_IMAGE_SUFFIXES))
        if len(files) < 2:
            raise ImageReadError(
                "not a registration dataset", path=path,
                expected="an nnU-Net raw folder (dataset.json + imagesTr/ [+ labelsTr/]), images/ + masks/, or a "
                         "folder of at least 2 images (.nii.gz, .nrrd, .mha)",
                found=f"{len(files)} image file(s)", fix="arrange the images in one of these layouts")
        ids = {}
        for p in files:
            name = p.name
            stem = name[: -len(next(s for s in _IMAGE_SUFFIXES if name.lower().endswith(s)))]
            ids[stem] = p
        dims = 2 if _read_image(files[0]).is_2d else 3
        return cls(root=path, layout="images", cases=sorted(ids), dims=dims, has_labels=False, label_values=(),
                   _files=ids)

    @property
    def name(self) -> str:
        return self.root.name

    def __len__(self) -> int:
        return len(self.cases)

    def load_image(self, case: str) -> Image:
        """The case's image, first channel only."""
        if self._seg is not None:
            img = self._seg.load_image(case)
        else:
            assert self._files is not None
            img = _read_image(self._files[case])
        if img.n_channels > 1:
            img = img.replace(voxels=np.ascontiguousarray(img.voxels[:1]))
        return img

    def load_label(self, case: str) -> Image | None:
        return self._seg.load_label(case) if self._seg is not None else None

    def header(self, case: str) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
        """(spacing (sx, sy, sz), shape (Z, Y, X)) without reading the voxels where the format allows."""
        if self._seg is not None:
            return self._seg.header(case)
        img = self.load_image(case)
        return img.spacing, img.spatial_shape


def _read_image(path: Path) -> Image:
    from medimg.io import read

    return read(path)


def check_pair_image(image: Any, parameter: str, dims: int) -> Image:
    """A single-channel, finite image of the model's dimension, or one clear error."""
    from medimg.classical.registration_checks import check_image

    image = check_image(image, parameter)
    found = 2 if image.is_2d else 3
    if found != dims:
        raise InvalidParameterError(f"the model registers {dims}D images", parameter=parameter,
                                    expected=f"a {dims}D image", found=f"a {found}D image of shape "
                                    f"{image.spatial_shape}", fix=f"give {dims}D images, or a model trained on "
                                    f"{found}D data")
    return image


# ---- the pairs of `medimg register` ---------------------------------------------------------------------------
#: columns of a --pairs CSV: required, then optional (CSV column -> Pair field)
PAIR_COLUMNS = ("fixed", "moving")
PAIR_OPTIONAL_COLUMNS = ("moving_labels", "fixed_labels", "fixed_mask", "moving_mask")


@dataclass(frozen=True)
class Pair:
    """One registration job: file paths (as given on the command line or resolved from the CSV).

    ``folder()`` is the pair's output folder in a batch: ``<fixed stem>__<moving stem>``.
    """

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


@dataclass
class PairImages:
    """The images of one pair, read and checked by :func:`load_pair` (label maps and masks on their image's grid;
    landmarks as two (N, D) arrays in LPS mm, or None)."""

    fixed: Image
    moving: Image
    labels: Image | None = None
    fixed_labels: Image | None = None
    fixed_mask: Image | None = None
    moving_mask: Image | None = None
    landmarks: tuple[np.ndarray, np.ndarray] | None = None


def _read(path: str, *, kind: str | None = None) -> Image:
    from medimg.io import read

    return read(path, kind=kind)


def on_grid(image, other, image_name: str, option: str, path: str) -> None:
    from medimg.classical.registration_checks import check_on_grid
    from medimg.core.errors import InvalidParameterError

    try:
        check_on_grid(image, other, image_name, option)
    except InvalidParameterError as exc:
        raise InvalidParameterError(exc.what, path=path, parameter=option, expected=exc.expected,
                                    found=exc.found, fix=exc.fix) from exc


# ---- landmarks ---------------------------------------------------------------------------------------------------
def read_landmarks(path: str, option: str):
    """Read a landmark CSV into an (N, 2 or 3) float array (LPS mm), one row per landmark, through the one landmark
    reader (:func:`medimg.io.points.read_landmarks`; errors name ``option`` and the file)."""
    from medimg.io.points import read_landmarks as read_points

    return read_points(path, parameter=option).points


def check_landmarks(fixed_path: str, moving_path: str):
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


def landmarks_for(points, dim: int, option: str, path: str):
    from medimg.core.errors import InvalidParameterError

    if points.shape[1] < dim:
        raise InvalidParameterError(f"{dim}D images need {dim} coordinates per landmark", path=path,
                                    parameter=option, expected="x,y,z columns", found=f"{points.shape[1]} columns",
                                    fix="add the z coordinate (LPS mm)")
    return points[:, :dim]


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
def check_geometry(image, path: str, option: str) -> None:
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


def load_pair(pair: Pair) -> PairImages:
    """Read a pair's images and check them against each other (grids, spacing, landmarks).

    Raises MedimgError with the CSV line in front of the message for --pairs rows.
    """
    from medimg.core.errors import MedimgError

    try:
        fixed, moving = _read(pair.fixed), _read(pair.moving)
        check_geometry(fixed, pair.fixed, "FIXED")
        check_geometry(moving, pair.moving, "MOVING")
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
                on_grid(image, other, name, option, path)
        landmarks = None
        if pair.fixed_landmarks and pair.moving_landmarks:
            f_pts, m_pts = check_landmarks(pair.fixed_landmarks, pair.moving_landmarks)
            dim = 2 if fixed.is_2d else 3
            landmarks = (landmarks_for(f_pts, dim, "--fixed-landmarks", pair.fixed_landmarks),
                         landmarks_for(m_pts, dim, "--moving-landmarks", pair.moving_landmarks))
    except MedimgError as exc:
        name_line(exc, pair)
        raise
    return PairImages(fixed=fixed, moving=moving, labels=labels, fixed_labels=fixed_labels, fixed_mask=fixed_mask,
                      moving_mask=moving_mask, landmarks=landmarks)


def name_line(exc: BaseException, pair: Pair) -> None:
    """Put "PAIRS.csv line N: " in front of the message of an error about a --pairs row."""
    if pair.where and not str(exc).startswith(pair.where):
        exc.args = (pair.where + str(exc),)


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

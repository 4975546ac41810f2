"""What a user points ``medimg predict`` at, as samples to classify: :func:`open_prediction_inputs`.

An image file, a DICOM series folder, a folder of images (class sub-folders, split folders or flat), a folder of
DICOM series folders (one sample each), a CSV (a ``path`` column; labels optional) or a MedMNIST ``.npz`` become
:class:`PredictionInputs`: sample ids, the known labels where the source says them, and ``load_image(i)``. Every
file is probed when the inputs are opened, so a bad input fails before any work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.errors import ImageReadError, InvalidParameterError, MedimgError
from medimg.core.image import Image
from medimg.io.npz import MedMNISTFile
from medimg.tasks.classify.data import open_classification_dataset
from medimg.tasks.classify.data_sources import (
    DEFAULT_EXCLUDE,
    ID_COLUMNS,
    IMAGE_EXTENSIONS,
    LABEL_COLUMNS,
    SPLIT_COLUMNS,
    SPLIT_NAMES,
    check_consistency,
    file_suffix,
    find_column,
    is_excluded,
    is_visible,
    path_column,
    probe_all,
    probe_sample,
    read_csv,
    read_sample_file,
)

logger = logging.getLogger(__name__)

__all__ = ["PredictionInputs", "open_prediction_inputs", "label_names"]


class PredictionInputs:
    """Samples to classify, read lazily one at a time: ids, an optional known label per sample, ``load_image``.

    Build with :func:`open_prediction_inputs`. ``labels[i]`` is the class name (multi-label: the list of present
    labels) when the source says it (class folders, a CSV label column, MedMNIST), else None.
    """

    def __init__(self, *, source: Path, layout: str, ids: Sequence[str], dims: int,
                 paths: Sequence[Path] | None = None, dataset: Any = None, labels: Sequence[Any] | None = None,
                 series: str | int | None = None, images: Sequence[Image] | None = None) -> None:
        self.source = Path(source)
        self.layout = layout
        self._ids = tuple(ids)
        self.dims = int(dims)
        self._paths = tuple(paths) if paths is not None else None
        self._dataset = dataset
        self._images = tuple(images) if images is not None else None
        self.labels: tuple[Any, ...] = tuple(labels) if labels is not None else (None,) * len(self._ids)
        self._series = series
        self._index = {sid: i for i, sid in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            dup = next(s for s in self._ids if self._ids.count(s) > 1)
            raise ImageReadError("duplicate sample id", path=self.source, expected="each sample once",
                                 found=repr(dup), fix="remove the duplicate, or give the rows distinct 'id' values")

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"PredictionInputs(source='{self.source}', layout={self.layout}, samples={len(self)}, dims={self.dims})"

    def _position(self, i: int | str) -> int:
        if isinstance(i, str):
            if i not in self._index:
                raise InvalidParameterError("unknown sample id", parameter="i", found=repr(i),
                                            fix="take ids from inputs.ids")
            return self._index[i]
        return int(i)

    def describe(self, i: int | str) -> str:
        """Where a sample comes from (for messages)."""
        pos = self._position(i)
        if self._dataset is not None:
            return self._dataset.describe(pos)
        if self._paths is not None:
            return str(self._paths[pos])
        return str(self.source)

    def load_image(self, i: int | str) -> Image:
        """The sample as read (C, Z, Y, X), with its geometry; never rescaled."""
        pos = self._position(i)
        if self._images is not None:
            return self._images[pos]
        if self._dataset is not None:
            return self._dataset.load_image(pos)
        assert self._paths is not None
        path = self._paths[pos]
        if path.is_dir():
            from medimg.io import read

            return read(path, series=self._series)
        return read_sample_file(path)


def label_names(ds: Any) -> list[Any]:
    """Each sample's label of a ClassificationDataset as a class name (multi-label: the list of present labels)."""
    names = list(ds.class_names)
    if ds.task == "multilabel":
        return [[n for n, v in zip(names, row) if v] for row in np.asarray(ds.labels)]
    return [names[int(v)] for v in np.asarray(ds.labels)]


def _from_dataset(ds: Any) -> PredictionInputs:
    return PredictionInputs(source=ds.source, layout=ds.layout, ids=ds.ids, dims=ds.dims, dataset=ds,
                            labels=label_names(ds))


def _medmnist_splits(path: Path) -> list[str]:
    """The image splits of a MedMNIST .npz (empty for another or an unreadable file)."""
    try:
        return MedMNISTFile(path).splits
    except ImageReadError:
        return []


def _looks_dicom_series(folder: Path) -> bool:
    """A folder of files only, none with a non-DICOM image extension."""
    entries = [p for p in folder.iterdir() if is_visible(p)]
    if not entries or any(p.is_dir() for p in entries):
        return False
    other_images = [p for p in entries if file_suffix(p) in IMAGE_EXTENSIONS and file_suffix(p) != ".dcm"]
    return not other_images


def _probe_dims(source: Path, paths: Sequence[Path], where: Sequence[str]) -> int:
    headers = probe_all(list(paths), list(where))
    return check_consistency(source, headers, [str(p) for p in paths])[1]


def _csv_inputs(path: Path, split: str | Sequence[str] | None) -> PredictionInputs:
    columns, rows = read_csv(path)
    path_col = path_column(columns, path)
    id_col, split_col = find_column(columns, ID_COLUMNS), find_column(columns, SPLIT_COLUMNS)
    label_col = find_column(columns, LABEL_COLUMNS)
    if split is not None:
        if split_col is None:
            raise InvalidParameterError("split given but the CSV has no 'split' column", path=path,
                                        parameter="--split", expected="a 'split' column", found=f"columns {columns}",
                                        fix="leave --split out, or add a 'split' column")
        wanted = {split.lower()} if isinstance(split, str) else {s.lower() for s in split}
        rows = [(line, r) for line, r in rows if r[split_col].lower() in wanted]
    if not rows:
        raise ImageReadError("CSV has no rows" + (f" for split {split}" if split else ""), path=path,
                             expected="one row per image", found="none", fix="add rows, or check --split")
    ids, paths, where, labels = [], [], [], []
    for k, (line, r) in enumerate(rows, start=1):
        cell = r[path_col]
        p = Path(cell).expanduser() if cell else None
        p = p if p is None or p.is_absolute() else path.parent / p
        if p is None or not p.exists():
            raise ImageReadError(
                f"row {k} (line {line}) points to a missing file", path=path,
                expected="an existing image file or DICOM folder", found=f"'{p}' does not exist" if p else "an empty "
                "path", fix="correct the path (relative paths are relative to the CSV's folder) or remove the row")
        ids.append(r[id_col] if id_col is not None and r[id_col] else cell)
        paths.append(p)
        where.append(f"row {k} (line {line})")
        labels.append(r[label_col] if label_col is not None and r[label_col] else None)
    dims = _probe_dims(path, paths, where)
    return PredictionInputs(source=path, layout="csv", ids=ids, dims=dims, paths=paths, labels=labels)


def open_prediction_inputs(source: str | os.PathLike[str], *, split: str | Sequence[str] | None = None,
                           series: str | int | None = None) -> PredictionInputs:
    """The samples of ``source`` for prediction (every file is probed first, so a bad input fails before any work).

    Layouts, by what ``source`` is:

    * an image file (PNG/JPEG/TIFF, NIfTI, NRRD/MHA, a single DICOM file, an image .npz): one sample, id = name;
    * a MedMNIST ``.npz``: the ``split`` arrays (default: "test" if present, else "val"), ids ``split_index``,
      labels known;
    * a CSV/TSV with a ``path`` column (``id``, ``label``/``class`` and ``split`` optional; every row unless
      ``split`` is given);
    * a folder of DICOM files (no sub-folders): one 3D sample (``series`` picks one of several series);
    * a folder whose sub-folders hold only DICOM files: one sample per sub-folder (a study of series);
    * a folder of class sub-folders, or of split folders (``train/``, ``val/``, ``test/`` holding class folders;
      default split "test", else "val"): as :func:`~medimg.tasks.classify.data.open_classification_dataset`
      opens it, labels known;
    * a flat folder of image files (``*_mask*`` files skipped): one sample per file, id = file name.

    Raises:
        ImageReadError: nothing at ``source``, an unknown layout (empty folder, unsupported file), a CSV row
            pointing to a missing file, mixed 2D and 3D inputs, unreadable files (named).
        InvalidParameterError: ``split`` for an input without splits, an unknown split.

    Example:
        >>> import tempfile
        >>> from PIL import Image as PILImage
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("a.png", "b.png", "b_mask.png"):
        ...     PILImage.fromarray(np.zeros((8, 6), np.uint8)).save(folder / name)
        >>> inputs = open_prediction_inputs(folder)
        >>> inputs.ids, inputs.dims, inputs.load_image(0).spatial_shape
        (('a.png', 'b.png'), 2, (1, 8, 6))
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise ImageReadError("no such file or folder", path=src, expected="an image file, a folder, a CSV or a .npz",
                             found="nothing at this path", fix="check the path")
    suffix = file_suffix(src)
    if src.is_file():
        if suffix in (".csv", ".tsv"):
            return _csv_inputs(src, split)
        have = _medmnist_splits(src) if suffix == ".npz" else []
        if have:
            if split is None:
                split = "test" if "test" in have else "val" if "val" in have else "train"
                logger.info("%s: predicting the '%s' split", src, split)
            return _from_dataset(open_classification_dataset(src, split=split, single_class_ok=True))
        if split is not None:
            raise InvalidParameterError("--split applies to CSV files, MedMNIST .npz files and split folders",
                                        parameter="--split", expected="no --split for a single image",
                                        found=repr(split), fix="leave --split out")
        if suffix not in IMAGE_EXTENSIONS:
            from medimg.io.api import detect_format

            try:
                detect_format(src)
            except MedimgError as exc:
                raise ImageReadError(
                    "unknown input layout", path=src, expected="an image file, a DICOM series folder, a folder of "
                    "images, a CSV or a MedMNIST .npz", found=f"a file with extension '{suffix or 'none'}'",
                    fix="give an image (PNG, NIfTI, DICOM, ...) or list the images in a CSV file") from exc
        header = probe_sample(src)
        return PredictionInputs(source=src, layout="file", ids=[src.name], dims=header.dims, paths=[src])
    subdirs = sorted(p for p in src.iterdir() if p.is_dir() and is_visible(p))
    if subdirs:
        if all(_looks_dicom_series(p) for p in subdirs):
            if split is not None:
                raise InvalidParameterError("--split given for a folder of DICOM series", parameter="--split",
                                            expected="no --split", found=repr(split), fix="leave --split out")
            dims = _probe_dims(src, subdirs, [p.name for p in subdirs])
            return PredictionInputs(source=src, layout="series_folders", ids=[p.name for p in subdirs], dims=dims,
                                    paths=subdirs, series=series)
        names = [p.name for p in subdirs]
        if split is None and all(n.lower() in SPLIT_NAMES for n in names):
            split = next((n for want in ("test", "val", "valid", "validation") for n in names if n.lower() == want),
                         None)
            if split:
                logger.info("%s: predicting the '%s' split folder", src, split)
        return _from_dataset(open_classification_dataset(src, split=split, single_class_ok=True))
    if split is not None:
        raise InvalidParameterError("--split applies to CSV files, MedMNIST .npz files and split folders",
                                    parameter="--split", expected="no --split for a flat folder", found=repr(split),
                                    fix="leave --split out")
    files = sorted(p for p in src.iterdir() if p.is_file() and is_visible(p))
    images = [p for p in files if file_suffix(p) in IMAGE_EXTENSIONS and file_suffix(p) != ".dcm"
              and not is_excluded(p.name, DEFAULT_EXCLUDE)]
    if images:
        dims = _probe_dims(src, images, [""] * len(images))
        return PredictionInputs(source=src, layout="flat_folder", ids=[p.name for p in images], dims=dims,
                                paths=images)
    if files:  # DICOM files: one series
        from medimg.io import read

        image = read(src, series=series)
        return PredictionInputs(source=src, layout="dicom_series", ids=[src.name], dims=2 if image.is_2d else 3,
                                images=[image], paths=[src])
    raise ImageReadError("unknown input layout: the folder is empty", path=src,
                         expected="image files, class folders, or DICOM files", found="nothing readable",
                         fix="point at the images to classify")

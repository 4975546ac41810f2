"""Image classification datasets on disk: one interface over class folders, CSV files and MedMNIST archives.

:func:`open_classification_dataset` detects the layout of ``source`` and returns a
:class:`ClassificationDataset` (sample ids, class names, task, labels, ``load(i)``). Three layouts:

* **Class folders** (``source`` is a folder): one sub-folder per class, class names = sub-folder names, sorted.
  A file in a class folder is one sample when its extension is one that :func:`medimg.io.read` reads
  (:data:`IMAGE_EXTENSIONS`: PNG, JPEG, TIFF, NIfTI, NRRD, MHA/MHD, NPZ, single DICOM files); a sub-folder of a
  class folder is one 3D sample read as a DICOM series. Hidden files and folders (``.name``, ``__MACOSX``) and
  files with other extensions (``.txt``, ``.csv``, the ``.raw`` of an ``.mhd``) are ignored. When the folder
  holds only split folders (``train/``, ``val/``, ``test/`` ...), each holds class folders and ``split`` picks
  among them.
* **CSV** (``source`` is a ``.csv``/``.tsv`` file): a ``path`` column (also accepted: ``file``, ``filename``,
  ``image``, ``image_path``; relative paths are relative to the CSV's folder, and may name DICOM series folders)
  and either one label column (``label`` or ``class``: class names or integers, giving a binary or multi-class
  task) or several 0/1 columns (a multi-label task; chosen with ``label_columns=``, or inferred as every column
  that is not reserved when there is no ``label``/``class`` column). Reserved columns: ``id`` (sample id; default
  the path as written), ``split`` (selected with ``split=``) and ``group`` (also ``patient``, ``patient_id``,
  ``subject``: kept in :attr:`ClassificationDataset.groups` so folds can keep a patient's images together).
* **MedMNIST** (``source`` is a ``.npz`` with ``train_images``, ``train_labels``, ``val_*``, ``test_*``), 2D or
  3D, any size. Labels (N, 1) give a binary or multi-class task (class names "0", "1", ... unless
  ``class_names=`` names them), labels (N, k > 1) a multi-label task. Sample ids are ``f"{split}_{index}"``.
  The images of the selected splits are decompressed once, on the first :meth:`~ClassificationDataset.load`
  (or :meth:`~ClassificationDataset.preload`), and kept in memory, as MedMNIST's own loader does.

Splits: ``split=None`` takes every sample except those of a split called "test" (held out unless asked for by
name); ``split="train"`` or ``split=("train", "val")`` select by name (split folders, the CSV ``split`` column,
the MedMNIST arrays). :attr:`ClassificationDataset.splits` records each sample's split.

Mask files are not samples: in class folders, a file (or series folder) whose name contains one of the
``exclude`` patterns (default ``("_mask",)``, compared case-insensitively) is skipped, so BUSI's
``benign (1)_mask.png`` beside ``benign (1).png`` is left out. ``exclude=()`` keeps every file. CSV rows are
never excluded: the CSV lists samples explicitly.

Every file is probed when the dataset is opened (headers only where the format allows: PNG/JPEG/TIFF, NIfTI,
NRRD/MHA, DICOM), so unreadable files, mixed 2D and 3D inputs and mixed channel counts fail at once with the
file named. Pixel values are never rescaled: :meth:`ClassificationDataset.load` returns float32 arrays holding
the values of the file (16-bit and float PNG/TIFF stay intact); normalisation is the plan's job
(:func:`medimg.plans.classify_plan.preprocess_sample`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.errors import ImageReadError, InvalidParameterError, MedimgError
from medimg.core.image import Image
from medimg.tasks.segment.data import VerifyReport

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLIT_NAMES",
    "DEFAULT_EXCLUDE",
    "TASKS",
    "SampleHeader",
    "ClassificationDataset",
    "open_classification_dataset",
    "ClassificationVerifyReport",
    "verify_classification_dataset",
]

#: File extensions that are samples in class folders (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd",
                    ".npz", ".dcm")
#: Folder names / CSV ``split`` values recognised as data splits.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
#: File-name patterns that are not samples in class folders (BUSI-style ``*_mask.png``).
DEFAULT_EXCLUDE = ("_mask",)
#: The classification tasks.
TASKS = ("binary", "multiclass", "multilabel")

_RASTER_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_IGNORED_DIRS = ("__MACOSX",)
_PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
_LABEL_COLUMNS = ("label", "class")
_ID_COLUMNS = ("id", "sample_id")
_SPLIT_COLUMNS = ("split",)
_GROUP_COLUMNS = ("group", "patient", "patient_id", "subject")
_MISSING = ("", "nan", "na", "n/a", "null")
_MEDMNIST_SPLITS = ("train", "val", "test")
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _excluded(name: str, exclude: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(p.lower() in low for p in exclude)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in _IGNORED_DIRS


# ---- probing ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleHeader:
    """What a sample's header says without reading its voxels (where the format allows it).

    Attributes:
        channels: channels :meth:`ClassificationDataset.load` gives for this file alone (grey 1, RGB(A) 3).
        shape: spatial shape (Z, Y, X); Z == 1 for 2D images.
    """

    channels: int
    shape: tuple[int, int, int]

    @property
    def dims(self) -> int:
        return 2 if self.shape[0] == 1 else 3


def _raster_header(path: Path) -> SampleHeader:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(path) as pil:
            mode, (w, h) = pil.mode, pil.size
            pages = int(getattr(pil, "n_frames", 1)) if (pil.format or "").upper() == "TIFF" else 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(
            "not a readable image file", path=path, expected="PNG, JPEG or TIFF content",
            found=f"{type(exc).__name__}: {exc}", fix="replace the file with a readable copy, or remove it",
        ) from exc
    bands = PILImage.getmodebands(mode) if mode not in ("P", "PA") else 3
    channels = {2: 1, 4: 3}.get(bands, bands)
    return SampleHeader(channels=channels, shape=(pages, int(h), int(w)))


def _nifti_header(path: Path) -> SampleHeader:
    import nibabel as nib

    try:
        shape = [int(v) for v in nib.load(str(path)).shape]
    except (OSError, ValueError, EOFError, zlib.error, OverflowError, nib.filebasedimages.ImageFileError,
            nib.spatialimages.HeaderDataError) as exc:
        raise ImageReadError("not a readable NIfTI file", path=path, found=f"{type(exc).__name__}: {exc}",
                             fix="replace the file with a readable copy, or remove it") from exc
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    shape += [1] * (3 - len(shape))
    return SampleHeader(channels=shape[3] if len(shape) == 4 else 1, shape=(shape[2], shape[1], shape[0]))


def _itk_header(path: Path) -> SampleHeader:
    import SimpleITK as sitk

    from medimg.io.itk_formats import check_itk_header

    check_itk_header(path)  # ITK hangs on some hostile headers (NDims = 99999999999996)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError("not a readable NRRD/MHA file", path=path, found=str(exc).strip().splitlines()[-1],
                             fix="replace the file with a readable copy, or remove it") from exc
    size = list(reader.GetSize()) + [1, 1]
    return SampleHeader(channels=int(reader.GetNumberOfComponents()), shape=(size[2], size[1], size[0]))


def _dicom_header(path: Path) -> SampleHeader:
    from medimg.io.dicom import scan_dicom

    series = scan_dicom(path)
    if len(series) != 1:
        raise ImageReadError(
            "several DICOM series where one sample was expected", path=path, expected="exactly one series",
            found=f"{len(series)} series: " + ", ".join(s.description or s.series_uid for s in series),
            fix="give each series its own folder (one folder = one sample)",
        )
    s = series[0]
    return SampleHeader(channels=1, shape=(int(s.n_frames), int(s.rows), int(s.columns)))


def _probe(path: Path) -> SampleHeader:
    """The header of one sample file or DICOM series folder (ImageReadError naming the file if unreadable)."""
    from medimg.io.api import detect_format

    if not path.exists():
        raise ImageReadError("no such file or folder", path=path, expected="an image file or DICOM series folder",
                             found="nothing at this path", fix="check the path")
    if path.is_dir():
        return _dicom_header(path)
    fmt = detect_format(path)
    if fmt == "raster":
        return _raster_header(path)
    if fmt == "nifti":
        return _nifti_header(path)
    if fmt == "itk":
        return _itk_header(path)
    if fmt == "dicom":
        return _dicom_header(path)
    image = _read_file(path)
    return SampleHeader(channels=_channels_of(image.n_channels), shape=image.spatial_shape)


def _channels_of(n: int) -> int:
    """Channels a sample gives after dropping alpha: grey+alpha -> 1, RGBA -> 3."""
    return {2: 1, 4: 3}.get(n, n)


def _read_file(path: Path) -> Image:
    """Read one sample file or series folder; PNG/JPEG/TIFF without the 'no pixel spacing' warning."""
    from medimg.io.api import detect_format, read

    if path.is_file() and detect_format(path) == "raster":
        from medimg.io.raster import read_raster

        image = read_raster(path, spacing=(1.0, 1.0))
        return image.with_metadata(spacing_source="default_1mm")
    return read(path)


# ---- MedMNIST archives -----------------------------------------------------------------------------------------
class _NpzStore:
    """A MedMNIST .npz: array headers at once, the images of a split decompressed once on demand (shared).

    Pickling (e.g. for data-loader worker processes started with "spawn") keeps the headers and drops the
    decompressed arrays: each process decompresses what it reads.
    """

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "headers": self.headers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.headers = state["path"], state["headers"]
        self._arrays, self._lock = {}, threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as fh:
                        version = np.lib.format.read_magic(fh)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read_header(fh)
                    self.headers[info.filename[:-4]] = (tuple(int(v) for v in shape), np.dtype(dtype))
        except _NPZ_ERRORS as exc:
            raise self.error(exc) from exc

    def error(self, exc: BaseException) -> ImageReadError:
        return ImageReadError(
            "unreadable NPZ file", path=self.path, expected="a NumPy .npz archive without pickled objects",
            found=f"{type(exc).__name__}: {exc}", fix="check the file is complete; download it again",
        )

    def array(self, name: str) -> np.ndarray:
        with self._lock:
            if name not in self._arrays:
                try:
                    with np.load(self.path, allow_pickle=False) as npz:
                        arr = np.asarray(npz[name])
                except _NPZ_ERRORS as exc:
                    raise self.error(exc) from exc
                arr.flags.writeable = False
                self._arrays[name] = arr
                logger.debug("%s: decompressed %s %s", self.path, name, arr.shape)
            return self._arrays[name]


def _medmnist_sample(arr: np.ndarray) -> np.ndarray:
    """One MedMNIST sample as (C, Z, Y, X): (H, W) grey, (H, W, 3) RGB, (D, H, W) volume."""
    if arr.ndim == 2:
        return arr[None, None]
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.shape[0] != 3:
        return np.moveaxis(arr, -1, 0)[:, None]
    return arr[None]


# ---- the dataset ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sample:
    path: Path | None  # file or DICOM series folder; None for MedMNIST rows
    split: str
    index: int  # row in the MedMNIST split array
    group: str = ""


class ClassificationDataset:
    """An image classification dataset: sample ids, class names, labels and ``load(i)``.

    Build one with :func:`open_classification_dataset`. Read-only: the attributes are properties and
    :attr:`labels` is a read-only array; :meth:`subset` makes a new dataset (for folds).

    Attributes:
        source: the folder, CSV or NPZ the dataset was opened from.
        layout: "folder", "csv" or "medmnist".
        ids: one id per sample (folder: ``class/file``; CSV: the ``id`` column or the path as written;
            MedMNIST: ``split_index``).
        class_names: class names; index = class id (multi-label: one name per label column).
        task: "binary" (2 classes), "multiclass" (more) or "multilabel".
        dims: 2 or 3 (a sample is 2D when its Z size is 1).
        channels: channels every :meth:`load` returns (grey files are repeated to 3 channels when the dataset
            also holds RGB files).
        labels: int64 (N,) class ids, or uint8 (N, K) 0/1 for multi-label.
        splits: each sample's split name ("" when the layout has none).
        groups: each sample's group (CSV ``group``/``patient`` column; "" otherwise).
        excluded: files and folders left out by the ``exclude`` patterns.
    """

    def __init__(
        self,
        *,
        source: Path,
        layout: str,
        ids: Sequence[str],
        class_names: Sequence[str],
        task: str,
        labels: np.ndarray,
        samples: Sequence[_Sample],
        headers: Sequence[SampleHeader],
        channels: int,
        dims: int,
        excluded: Sequence[Path] = (),
        store: _NpzStore | None = None,
    ) -> None:
        self._source = Path(source)
        self._layout = layout
        self._ids = tuple(ids)
        self._class_names = tuple(class_names)
        self._task = task
        labels = np.array(labels, dtype=np.uint8 if task == "multilabel" else np.int64)
        labels.flags.writeable = False
        self._labels = labels
        self._samples = tuple(samples)
        self._headers = tuple(headers)
        self._channels = int(channels)
        self._excluded = tuple(excluded)
        self._store = store
        self._index = {sid: i for i, sid in enumerate(self._ids)}
        self._dims = int(dims)

    # ---- description ---------------------------------------------------------------------------------------
    source = property(lambda self: self._source)
    layout = property(lambda self: self._layout)
    ids = property(lambda self: self._ids)
    class_names = property(lambda self: self._class_names)
    task = property(lambda self: self._task)
    dims = property(lambda self: self._dims)
    channels = property(lambda self: self._channels)
    labels = property(lambda self: self._labels)
    excluded = property(lambda self: self._excluded)

    @property
    def n_classes(self) -> int:
        return len(self._class_names)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s.split for s in self._samples)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(s.group for s in self._samples)

    @property
    def paths(self) -> tuple[Path | None, ...]:
        """Each sample's file or DICOM series folder (None for MedMNIST samples)."""
        return tuple(s.path for s in self._samples)

    @property
    def class_counts(self) -> dict[str, int]:
        """Samples per class (multi-label: positive samples per class), in class order."""
        if self._task == "multilabel":
            counts = self._labels.sum(axis=0) if len(self._labels) else np.zeros(self.n_classes, np.int64)
        else:
            counts = np.bincount(self._labels, minlength=self.n_classes)
        return {name: int(c) for name, c in zip(self._class_names, counts)}

    @property
    def imbalance_ratio(self) -> float:
        """Largest over smallest class count (multi-label: the largest ratio of negatives to positives, or of
        positives to negatives, of a label). ``inf`` when a class has no sample (a label no positive or no negative).
        """
        counts = np.array(list(self.class_counts.values()), float)
        if self._task == "multilabel":
            neg = len(self) - counts
            if not counts.size or (counts == 0).any() or (neg == 0).any():
                return math.inf if len(self) else 1.0
            return float(np.max(np.maximum(neg / counts, counts / neg)))
        return float(counts.max() / counts.min()) if counts.min() > 0 else math.inf

    def header(self, i: int | str) -> SampleHeader:
        """Channels and spatial shape (Z, Y, X) of a sample, from the probe done when the dataset was opened."""
        return self._headers[self._position(i)]

    def describe(self, i: int | str) -> str:
        """Where a sample comes from, for messages: its file, or ``archive.npz[split_images][index]``."""
        s = self._samples[self._position(i)]
        return str(s.path) if s.path is not None else f"{self._source}[{s.split}_images][{s.index}]"

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return (f"ClassificationDataset(source='{self._source}', layout={self._layout}, samples={len(self)}, "
                f"task={self._task}, dims={self._dims}, channels={self._channels}, classes={list(self._class_names)})")

    # ---- loading -------------------------------------------------------------------------------------------
    def _position(self, i: int | str) -> int:
        if isinstance(i, str):
            if i not in self._index:
                raise InvalidParameterError("unknown sample id", parameter="i", expected=f"one of {len(self)} ids",
                                            found=repr(i), fix="take ids from dataset.ids")
            return self._index[i]
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or not -len(self) <= i < len(self):
            raise InvalidParameterError("sample index out of range", parameter="i",
                                        expected=f"an integer in [0, {len(self)})", found=repr(i),
                                        fix="use an index below len(dataset), or a sample id")
        return int(i) % len(self)

    def preload(self) -> None:
        """Decompress the MedMNIST images of this dataset's splits now (no-op for other layouts)."""
        if self._store is not None:
            for split in sorted(set(self.splits)):
                self._store.array(f"{split}_images")

    def load_image(self, i: int | str) -> Image:
        """A sample as read, as an :class:`~medimg.core.image.Image` (C, Z, Y, X) with its geometry and dtype.

        Alpha channels are dropped and grey images repeated to RGB when the dataset holds RGB files, as in
        :meth:`load`. Metadata gain ``sample_id``, ``split`` and ``spacing_known`` (False for PNG/JPEG/TIFF and
        MedMNIST, whose spacing is a default 1 mm).

        Raises:
            InvalidParameterError: unknown id or index.
            ImageReadError: the file cannot be read (named).
        """
        pos = self._position(i)
        s = self._samples[pos]
        if s.path is None:
            assert self._store is not None
            arr = _medmnist_sample(self._store.array(f"{s.split}_images")[s.index])
            image = Image.from_array(arr, metadata={"source_format": "npz", "source_path": str(self._source),
                                                    "spacing_source": "default_1mm"}, copy=False)
        else:
            image = _read_file(s.path)
        vox = image.voxels
        if vox.shape[0] in (2, 4):
            vox = vox[:-1]
        if vox.shape[0] == 1 and self._channels == 3:
            vox = np.repeat(vox, 3, axis=0)
        if vox.shape[0] != self._channels:
            raise ImageReadError(
                "sample has an unexpected number of channels", path=self.describe(pos),
                expected=f"{self._channels} channels like the rest of the dataset", found=f"{vox.shape[0]} channels",
                fix="convert the file to the dataset's channel layout, or remove it",
            )
        meta = dict(image.metadata)
        meta.update({"sample_id": self._ids[pos], "split": s.split,
                     "spacing_known": meta.get("spacing_source", "default_1mm") != "default_1mm"})
        return image.replace(voxels=np.ascontiguousarray(vox), metadata=meta)

    def load(self, i: int | str) -> np.ndarray:
        """A sample as a float32 array: (C, Y, X) for 2D datasets, (C, Z, Y, X) for 3D ones.

        Values are those of the file (no rescaling; 16-bit and float images stay intact). RGB(A) gives 3
        channels (alpha dropped), grey gives 1, repeated to 3 when the dataset also holds RGB files.

        Raises:
            InvalidParameterError: unknown id or index.
            ImageReadError: the file cannot be read (named), or it is 2D in a 3D dataset (or the reverse).

        Example:
            >>> ds = open_classification_dataset("../shared/data/breast_ultrasound_busi")  # doctest: +SKIP
            >>> ds.load(0).shape                                                             # doctest: +SKIP
            (1, 256, 256)
        """
        image = self.load_image(i)
        self._check_dims(i, image)
        vox = np.asarray(image.voxels, dtype=np.float32)
        return np.ascontiguousarray(vox[:, 0] if self._dims == 2 else vox)

    def _check_dims(self, i: int | str, image: Image) -> None:
        if (2 if image.is_2d else 3) != self._dims:
            raise ImageReadError(
                f"sample is {'2D' if image.is_2d else '3D'} in a {self._dims}D dataset", path=self.describe(i),
                expected=f"a {self._dims}D image", found=f"shape (Z, Y, X) {image.spatial_shape}",
                fix="keep 2D images and 3D volumes in separate datasets",
            )

    def spacing(self, i: int | str) -> tuple[float, float, float] | None:
        """Voxel spacing (sx, sy, sz) mm from the file (reads the sample), or None when the format has none."""
        image = self.load_image(i)
        return tuple(float(v) for v in image.spacing) if image.metadata["spacing_known"] else None  # type: ignore

    # ---- derivation ----------------------------------------------------------------------------------------
    def subset(self, indices: Sequence[int] | np.ndarray) -> ClassificationDataset:
        """A new dataset with the samples at ``indices`` (same class names and task; e.g. one fold).

        Raises:
            InvalidParameterError: an index out of range.
        """
        pos = [self._position(int(i)) for i in np.asarray(indices, dtype=np.int64).ravel()]
        return ClassificationDataset(
            source=self._source, layout=self._layout, ids=[self._ids[p] for p in pos], class_names=self._class_names,
            task=self._task, labels=self._labels[pos] if pos else self._labels[:0],
            samples=[self._samples[p] for p in pos], headers=[self._headers[p] for p in pos],
            channels=self._channels, dims=self._dims, excluded=self._excluded, store=self._store,
        )


# ---- opening ------------------------------------------------------------------------------------------------
def _splits_arg(split: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if split is None:
        return None
    names = (split,) if isinstance(split, str) else tuple(split)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidParameterError("invalid split", parameter="split", expected="a split name or a list of names",
                                    found=repr(split), fix="e.g. split='train' or split=('train', 'val')")
    return names


def _exclude_arg(exclude: str | Sequence[str] | None) -> tuple[str, ...]:
    if exclude is None:
        return ()
    patterns = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    if not all(isinstance(p, str) and p for p in patterns):
        raise InvalidParameterError("invalid exclude patterns", parameter="exclude",
                                    expected="non-empty strings", found=repr(exclude),
                                    fix="e.g. exclude=('_mask',), or exclude=() to keep every file")
    return patterns


def _task_of(n_classes: int, multilabel: bool) -> str:
    return "multilabel" if multilabel else ("binary" if n_classes == 2 else "multiclass")


def _single_class_error(path: Path, what: str, names: Sequence[str]) -> ImageReadError:
    return ImageReadError(
        f"only one class: {what}", path=path, expected="at least 2 classes", found=f"classes {list(names)}",
        fix="add samples of the other classes (a classifier needs at least two)",
    )


def _class_order(found: Sequence[str], class_names: Sequence[str] | None, where: Path, what: str) -> list[str]:
    """Class names in order: ``class_names`` when given (must cover ``found``), else ``found`` sorted."""
    if class_names is None:
        return sorted(set(found))
    names = [str(n) for n in class_names]
    if len(set(names)) != len(names):
        raise InvalidParameterError("duplicate class names", parameter="class_names", expected="distinct names",
                                    found=names, fix="list each class once")
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise InvalidParameterError(
            f"{what} not in class_names", path=where, parameter="class_names", expected=f"one of {names}",
            found=unknown, fix="add them to class_names, or leave class_names out to use the data's classes",
        )
    return names


def _check_consistency(source: Path, headers: Sequence[SampleHeader], where: Sequence[str]) -> tuple[int, int]:
    """Refuse mixed 2D/3D and mixed channel counts; return the dataset's (channels, dims)."""
    two = [i for i, h in enumerate(headers) if h.dims == 2]
    three = [i for i, h in enumerate(headers) if h.dims == 3]
    if two and three:
        a, b = two[0], three[0]
        raise ImageReadError(
            "mixed 2D and 3D inputs", path=source, expected="only 2D images or only 3D volumes",
            found=f"{len(two)} 2D (e.g. '{where[a]}', shape {headers[a].shape[1:]}) and {len(three)} 3D "
                  f"(e.g. '{where[b]}', shape {headers[b].shape})",
            fix="keep 2D images and 3D volumes in separate datasets",
        )
    dims = 3 if three else 2
    found = sorted({h.channels for h in headers})
    if len(found) == 1:
        return found[0], dims
    if found == [1, 3]:
        logger.info("%s: grey and RGB images mixed; grey images are repeated to 3 channels", source)
        return 3, dims
    first = {c: next(i for i, h in enumerate(headers) if h.channels == c) for c in found}
    raise ImageReadError(
        "samples have different numbers of channels", path=source, expected="the same channels in every sample",
        found=", ".join(f"{c} channels (e.g. '{where[i]}')" for c, i in first.items()),
        fix="convert the files to one channel layout",
    )


def _probe_all(paths: Sequence[Path], context: Sequence[str]) -> list[SampleHeader]:
    headers = []
    for path, ctx in zip(paths, context):
        try:
            headers.append(_probe(path))
        except MedimgError as exc:
            raise ImageReadError(
                f"{ctx}: {exc.what}" if ctx else exc.what, path=exc.path or path, expected=exc.expected,
                found=exc.found, fix=exc.fix or "replace or remove the file",
            ) from exc
    return headers


def _open_folder(root: Path, splits: tuple[str, ...] | None, class_names: Sequence[str] | None,
                 exclude: tuple[str, ...], single_class_ok: bool = False) -> ClassificationDataset:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    split_layout = bool(subdirs) and all(p.name.lower() in SPLIT_NAMES for p in subdirs)
    if split_layout:
        available = [p.name for p in subdirs]
        if splits is None:
            chosen = [p for p in subdirs if p.name.lower() != "test"]
            if not chosen:
                raise InvalidParameterError("only a test split", path=root, parameter="split",
                                            expected="split folders other than test", found=available,
                                            fix="pass split='test' to open the test split")
        else:
            missing = [s for s in splits if s not in available]
            if missing:
                raise InvalidParameterError("no such split folder", path=root, parameter="split",
                                            expected=f"one of {available}", found=missing,
                                            fix="pick split folders that exist")
            chosen = [root / s for s in splits]
        roots = [(p, p.name) for p in chosen]
    else:
        if splits is not None:
            raise InvalidParameterError(
                "split given but the folder has no split folders", path=root, parameter="split",
                expected=f"sub-folders named {', '.join(SPLIT_NAMES)}",
                found=f"class folders {[p.name for p in subdirs]}",
                fix="leave split out, or arrange the data as <root>/<split>/<class>/",
            )
        roots = [(root, "")]
    items: list[tuple[str, str, Path]] = []  # (class, split, path)
    excluded: list[Path] = []
    for base, split in roots:
        class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and _visible(p)) if base.is_dir() else []
        loose = sorted(p for p in base.iterdir() if p.is_file() and _suffix(p) in IMAGE_EXTENSIONS) \
            if base.is_dir() else []
        if not class_dirs:
            raise ImageReadError(
                "no class folders" + (" (images lie directly in the folder)" if loose else ""), path=base,
                expected="one sub-folder per class holding its images, e.g. benign/, malignant/",
                found=f"{len(loose)} image files and no sub-folders" if loose else
                "no sub-folders and no image files",
                fix="move each image into a folder named after its class, or describe the images in a CSV file "
                    "with 'path' and 'label' columns",
            )
        if loose:
            logger.warning("%s: %d image files beside the class folders are not samples (e.g. '%s')", base,
                           len(loose), loose[0].name)
        for cdir in class_dirs:
            entries = sorted(p for p in cdir.iterdir() if _visible(p))
            n_before = len(items)
            others: set[str] = set()
            for p in entries:
                if p.is_file() and _suffix(p) not in IMAGE_EXTENSIONS:
                    others.add(_suffix(p) or "no extension")
                    continue
                if _excluded(p.name, exclude):
                    excluded.append(p)
                    continue
                items.append((cdir.name, split, p))
            if len(items) == n_before:
                raise ImageReadError(
                    "class folder holds no images", path=cdir,
                    expected="image files (" + ", ".join(IMAGE_EXTENSIONS) + ") or DICOM series sub-folders",
                    found=(f"only files with {sorted(others)}" if others else "nothing")
                    + (f" and {sum(1 for e in excluded if e.parent == cdir)} files excluded by the patterns "
                       f"{list(exclude)}" if any(e.parent == cdir for e in excluded) else ""),
                    fix="add the class's images (convert other formats to PNG), or remove the empty folder",
                )
    if excluded:
        logger.info("%s: %d files match the exclude patterns %s and are not samples", root, len(excluded), exclude)
    names = _class_order([c for c, _, _ in items], class_names, root, "class folders")
    if len(names) < 2 and not single_class_ok:
        raise _single_class_error(root, "the folder holds one class folder", names)
    ids = [f"{split}/{c}/{p.name}" if split else f"{c}/{p.name}" for c, split, p in items]
    paths = [p for _, _, p in items]
    headers = _probe_all(paths, [""] * len(paths))
    channels, dims = _check_consistency(root, headers, [str(p) for p in paths])
    lookup = {n: k for k, n in enumerate(names)}
    return ClassificationDataset(
        source=root, layout="folder", ids=ids, class_names=names, task=_task_of(len(names), False),
        labels=[lookup[c] for c, _, _ in items], samples=[_Sample(p, s, -1) for _, s, p in items],
        headers=headers, channels=channels, dims=dims, excluded=excluded,
    )


def _find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    low = {c.strip().lower(): c for c in columns}
    return next((low[c] for c in candidates if c in low), None)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageReadError("cannot read the CSV file", path=path, expected="a UTF-8 text file",
                             found=f"{type(exc).__name__}: {exc}", fix="save the table as UTF-8 CSV") from exc
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = max(("\t", ";", ","), key=lambda d: (header.count(d), d == ","))  # the header's most common
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    rows = []
    try:
        for row in reader:
            values = {(k or "").strip(): (v if isinstance(v, str) else "").strip() for k, v in row.items()}
            if any(values.values()):
                rows.append((reader.line_num, values))
    except csv.Error as exc:
        raise ImageReadError("malformed CSV file", path=path, found=f"line {reader.line_num}: {exc}",
                             fix="repair the quoting of that line") from exc
    return columns, rows


def _open_csv(path: Path, splits: tuple[str, ...] | None, label_columns: Sequence[str] | None,
              class_names: Sequence[str] | None) -> ClassificationDataset:
    columns, rows = _read_csv(path)
    path_col = _find_column(columns, _PATH_COLUMNS)
    if path_col is None:
        raise ImageReadError("CSV has no path column", path=path, expected="a column named " + " or ".join(
            f"'{c}'" for c in _PATH_COLUMNS), found=f"columns {columns}",
            fix="name the column holding the image paths 'path'")
    id_col, split_col = _find_column(columns, _ID_COLUMNS), _find_column(columns, _SPLIT_COLUMNS)
    group_col = _find_column(columns, _GROUP_COLUMNS)
    reserved = {c for c in (path_col, id_col, split_col, group_col) if c is not None}
    if label_columns is not None:
        chosen = [label_columns] if isinstance(label_columns, str) else [str(c) for c in label_columns]
        missing = [c for c in chosen if c not in columns]
        if not chosen or missing or len(set(chosen)) != len(chosen):
            raise InvalidParameterError(
                "label columns not in the CSV", path=path, parameter="label_columns",
                expected=f"distinct names among {[c for c in columns if c not in reserved]}",
                found=missing or chosen, fix="give the names of the label columns exactly as in the header",
            )
    else:
        label_col = _find_column(columns, _LABEL_COLUMNS)
        chosen = [label_col] if label_col is not None else [c for c in columns if c not in reserved and c]
        if not chosen:
            raise ImageReadError(
                "CSV has no label column", path=path, expected="a 'label' column, or 0/1 columns (multi-label)",
                found=f"columns {columns}", fix="add a 'label' column with each image's class",
            )
    if splits is not None:
        if split_col is None:
            raise InvalidParameterError("split given but the CSV has no 'split' column", path=path,
                                        parameter="split", expected="a 'split' column", found=f"columns {columns}",
                                        fix="leave split out, or add a 'split' column (train/val/test)")
        wanted = {s.lower() for s in splits}
        rows = [(line, r) for line, r in rows if r[split_col].lower() in wanted]
    elif split_col is not None:
        rows = [(line, r) for line, r in rows if r[split_col].lower() != "test"]
    if not rows:
        raise ImageReadError("CSV has no rows" + (f" for split {list(splits)}" if splits else ""), path=path,
                             expected="one row per image", found="none", fix="add rows, or check split=")
    ids, paths, context, raw_labels = [], [], [], []
    base = path.parent
    for k, (line, r) in enumerate(rows, start=1):
        where = f"row {k} (line {line})"
        cell = r[path_col]
        if not cell:
            raise ImageReadError(f"{where} has an empty path", path=path, expected="a file path",
                                 found="an empty cell", fix="fill in the path or remove the row")
        p = Path(cell).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.exists():
            raise ImageReadError(
                f"{where} points to a missing file", path=path, expected="an existing image file or DICOM folder",
                found=f"'{p}' does not exist", fix="correct the path (relative paths are relative to the CSV's "
                "folder) or remove the row",
            )
        values = []
        for col in chosen:
            v = r.get(col, "")
            if v.lower() in _MISSING:
                raise ImageReadError(
                    f"{where} has an empty or NaN label", path=path, parameter=col, expected="a label",
                    found=repr(v), fix=f"fill in column '{col}' for '{cell}', or remove the row",
                )
            values.append(v)
        ids.append(r[id_col] if id_col is not None and r[id_col] else cell)
        paths.append(p)
        context.append(where)
        raw_labels.append(values)
    multilabel = len(chosen) > 1
    if multilabel:
        labels = np.zeros((len(rows), len(chosen)), np.uint8)
        for k, values in enumerate(raw_labels):
            for j, v in enumerate(values):
                try:
                    f = float(v)
                except ValueError:
                    f = math.nan
                if f not in (0.0, 1.0):
                    raise ImageReadError(
                        f"{context[k]}: multi-label value is not 0 or 1", path=path, parameter=chosen[j],
                        expected="0 or 1 in every label column", found=repr(v),
                        fix=f"correct the value, or pass label_columns= without column '{chosen[j]}'",
                    )
                labels[k, j] = int(f)
        names = list(chosen) if class_names is None else _class_order(chosen, class_names, path, "label columns")
        if names != list(chosen):
            raise InvalidParameterError("class_names differ from the label columns", path=path,
                                        parameter="class_names", expected=list(chosen), found=list(class_names or []),
                                        fix="leave class_names out for multi-label CSV files")
    else:
        values = [v[0] for v in raw_labels]
        names, labels = _label_values(values, class_names, path, chosen[0])
    seen: dict[str, int] = {}
    for k, sid in enumerate(ids, start=1):
        if sid in seen:
            raise ImageReadError("duplicate sample", path=path, expected="each image once",
                                 found=f"rows {seen[sid]} and {k} are both '{sid}'",
                                 fix="remove the duplicate row, or give the rows distinct 'id' values")
        seen[sid] = k
    headers = _probe_all(paths, context)
    channels, dims = _check_consistency(path, headers, [f"{c}: {p}" for c, p in zip(context, paths)])
    return ClassificationDataset(
        source=path, layout="csv", ids=ids, class_names=names, task=_task_of(len(names), multilabel), labels=labels,
        samples=[_Sample(p, r[split_col] if split_col else "", -1, r[group_col] if group_col else "")
                 for p, (_, r) in zip(paths, rows)],
        headers=headers, channels=channels, dims=dims,
    )


def _as_int(v: str) -> int | None:
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _label_values(values: Sequence[str], class_names: Sequence[str] | None, where: Path,
                  column: str) -> tuple[list[str], np.ndarray]:
    """Class names and class ids of single-label values (class names, or integers)."""
    ints = [_as_int(v) for v in values]
    numeric = all(i is not None for i in ints)
    if class_names is not None and numeric and not set(values) <= {str(n) for n in class_names}:
        names = [str(n) for n in class_names]  # integers index class_names
        bad = sorted({i for i in ints if not 0 <= i < len(names)})  # type: ignore[operator]
        if bad:
            raise InvalidParameterError(
                "integer labels do not index class_names", path=where, parameter=column,
                expected=f"0..{len(names) - 1} ({len(names)} class names)", found=bad,
                fix="give one class name per integer label",
            )
        return _class_order(names, class_names, where, "labels"), np.asarray(ints, np.int64)
    if numeric:
        found = sorted({int(i) for i in ints})  # type: ignore[arg-type]
        values = [str(i) for i in ints]
        names = _class_order([str(i) for i in found], class_names, where, "labels")
        if class_names is None:
            names = [str(i) for i in found]  # numeric order, not text order
    else:
        names = _class_order(values, class_names, where, "labels")
    if len(names) < 2:
        raise _single_class_error(where, f"every sample has label {names[0]!r} in column '{column}'", names)
    lookup = {n: k for k, n in enumerate(names)}
    return names, np.asarray([lookup[v] for v in values], np.int64)


def _open_medmnist(path: Path, splits: tuple[str, ...] | None,
                   class_names: Sequence[str] | None, single_class_ok: bool = False) -> ClassificationDataset:
    store = _NpzStore(path)
    available = [s for s in _MEDMNIST_SPLITS if f"{s}_images" in store.headers]
    if not available or any(not k.startswith(_MEDMNIST_SPLITS) for k in store.headers):
        raise ImageReadError(
            "not a MedMNIST file", path=path, expected="arrays train_images, train_labels, val_images, ...",
            found=", ".join(f"{k} {v[0]}" for k, v in store.headers.items()) or "no arrays",
            fix="give a MedMNIST .npz, or list the images in a CSV file",
        )
    if splits is None:
        chosen = [s for s in available if s != "test"] or available
    else:
        unknown = [s for s in splits if s not in available]
        if unknown:
            raise InvalidParameterError("no such MedMNIST split", path=path, parameter="split",
                                        expected=f"one of {available}", found=unknown,
                                        fix="pick splits the file holds")
        chosen = list(splits)
    all_labels = {}
    for s in available:
        n = store.headers[f"{s}_images"][0][0]
        key = f"{s}_labels"
        if key not in store.headers or store.headers[key][0][:1] != (n,):
            raise ImageReadError(f"MedMNIST split '{s}' has no matching labels", path=path,
                                 expected=f"{key} with {n} rows", found=store.headers.get(key, ("missing",))[0],
                                 fix="use the original MedMNIST file")
        lab = np.asarray(store.array(key)).reshape(n, -1)
        if not (np.issubdtype(lab.dtype, np.number) or lab.dtype == bool):
            raise ImageReadError(f"MedMNIST labels '{key}' are not numbers", path=path, parameter=key,
                                 expected="integer labels", found=str(lab.dtype), fix="use the original MedMNIST file")
        values = lab.astype(np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ImageReadError(f"NaN or non-integer label in '{key}'", path=path, parameter=key,
                                 expected="integer labels", found=f"row {row}: {lab[row].tolist()}",
                                 fix="use the original MedMNIST file")
        all_labels[s] = values.astype(np.int64)
    widths = {v.shape[1] for v in all_labels.values()}
    if len(widths) != 1:
        raise ImageReadError("MedMNIST splits have different label widths", path=path, expected="the same (N, k) "
                             "labels in every split", found={s: v.shape for s, v in all_labels.items()},
                             fix="use the original MedMNIST file")
    k = widths.pop()
    multilabel = k > 1
    ids, samples, labels, headers = [], [], [], []
    for s in chosen:
        shape = store.headers[f"{s}_images"][0]
        rgb = len(shape) == 4 and shape[-1] == 3 and shape[1] != 3
        if len(shape) == 3 or rgb:
            header = SampleHeader(channels=3 if rgb else 1, shape=(1, shape[1], shape[2]))
        elif len(shape) == 4:
            header = SampleHeader(channels=1, shape=(shape[1], shape[2], shape[3]))
        else:
            raise ImageReadError(f"MedMNIST images '{s}_images' have an unexpected shape", path=path,
                                 expected="(N, H, W), (N, H, W, 3) or (N, D, H, W)", found=shape,
                                 fix="use the original MedMNIST file")
        lab = all_labels[s]
        if multilabel and not np.isin(lab, (0, 1)).all():
            row = int(np.argwhere(~np.isin(lab, (0, 1)))[0][0])
            raise ImageReadError(f"multi-label value is not 0 or 1 in '{s}_labels'", path=path,
                                 parameter=f"{s}_labels", expected="0 or 1", found=f"row {row}: {lab[row].tolist()}",
                                 fix="use the original MedMNIST file")
        n = shape[0]
        ids += [f"{s}_{i}" for i in range(n)]
        samples += [_Sample(None, s, i) for i in range(n)]
        headers += [header] * n
        labels.append(lab if multilabel else lab[:, 0])
    label_arr = np.concatenate(labels).astype(np.int64)
    if multilabel:
        names = [f"label_{j}" for j in range(k)] if class_names is None else [str(c) for c in class_names]
        if len(names) != k:
            raise InvalidParameterError("class_names do not match the label columns", path=path,
                                        parameter="class_names", expected=f"{k} names", found=len(names),
                                        fix=f"give {k} names, one per label column")
    else:
        every = np.concatenate([v[:, 0] for v in all_labels.values()]).astype(np.int64)
        if every.min() < 0:
            raise ImageReadError("negative MedMNIST label", path=path, expected="labels >= 0",
                                 found=int(every.min()), fix="use the original MedMNIST file")
        n_classes = int(every.max()) + 1
        if class_names is None:
            names = [str(i) for i in range(n_classes)]
        else:
            names = [str(c) for c in class_names]
            if len(names) < n_classes or len(set(names)) != len(names):
                raise InvalidParameterError("class_names do not cover the labels", path=path,
                                            parameter="class_names", expected=f"{n_classes} distinct names",
                                            found=names, fix="give one name per class id, class 0 first")
        if len(names) < 2 and not single_class_ok:
            raise _single_class_error(path, "every label is 0", names)
    channels, dims = _check_consistency(path, headers, [f"{path}[{s.split}_images][{s.index}]" for s in samples])
    return ClassificationDataset(
        source=path, layout="medmnist", ids=ids, class_names=names, task=_task_of(len(names), multilabel),
        labels=label_arr, samples=samples, headers=headers, channels=channels, dims=dims, store=store,
    )


def open_classification_dataset(
    source: str | os.PathLike[str],
    *,
    split: str | Sequence[str] | None = None,
    label_columns: str | Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = DEFAULT_EXCLUDE,
    single_class_ok: bool = False,
) -> ClassificationDataset:
    """Open a classification dataset: a folder of class folders, a CSV file or a MedMNIST .npz.

    See the module docstring for the layouts, the reserved CSV columns and the mask-file rule.

    Args:
        source: the dataset folder, CSV/TSV file or MedMNIST .npz file.
        split: a split name or several; None: every sample except the "test" split.
        label_columns: CSV only: the label column (one name: binary/multi-class) or the 0/1 columns
            (several names: multi-label). Default: the ``label``/``class`` column, else every non-reserved column.
        class_names: the classes in class-id order, when the data alone cannot tell (a split missing a class,
            MedMNIST's integer labels, a fixed order for a model). Integer CSV/MedMNIST labels index them.
        exclude: class folders only: file-name patterns (case-insensitive substrings) that are not samples;
            default ``("_mask",)``; ``()`` keeps every file.
        single_class_ok: accept class folders / MedMNIST files that hold one class (samples to *predict* whose
            labels are known); training data needs two classes or more (CSV files always do).

    Returns:
        The :class:`ClassificationDataset`.

    Raises:
        ImageReadError: missing source; a folder with no class folders (images directly in it, or empty); a class
            folder without images; a CSV row with a missing file or an empty/NaN label (row and line named); a
            multi-label value other than 0/1; one class only; mixed 2D and 3D inputs; mixed channel counts;
            an unreadable file (named).
        InvalidParameterError: an unknown split, label column or class name.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image as PILImage
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for cls in ("cat", "dog"):
        ...     (root / cls).mkdir()
        ...     PILImage.fromarray(np.zeros((8, 6), np.uint8)).save(root / cls / "a.png")
        ...     PILImage.fromarray(np.ones((8, 6), np.uint8)).save(root / cls / "a_mask.png")
        >>> ds = open_classification_dataset(root)
        >>> ds.ids, ds.task, ds.dims, ds.load(0).shape, len(ds.excluded)
        (('cat/a.png', 'dog/a.png'), 'binary', 2, (1, 8, 6), 2)
    """
    src = Path(source).expanduser()
    splits = _splits_arg(split)
    patterns = _exclude_arg(exclude)
    if not src.exists():
        raise ImageReadError("dataset not found", path=src, expected="a folder of class folders, a CSV or a .npz",
                             found="nothing at this path", fix="check the path")
    if label_columns is not None and not (src.is_file() and src.suffix.lower() in (".csv", ".tsv")):
        raise InvalidParameterError("label_columns applies to CSV files only", parameter="label_columns",
                                    expected="None for folders and .npz files", found=repr(label_columns),
                                    fix="leave label_columns out")
    if src.is_dir():
        ds = _open_folder(src, splits, class_names, patterns, single_class_ok)
    elif src.suffix.lower() in (".csv", ".tsv"):
        ds = _open_csv(src, splits, label_columns, class_names)
    elif src.suffix.lower() == ".npz":
        ds = _open_medmnist(src, splits, class_names, single_class_ok)
    else:
        raise ImageReadError(
            "unknown dataset layout", path=src, expected="a folder of class folders, a .csv/.tsv file or a MedMNIST "
            ".npz", found=f"a file with extension '{src.suffix or 'none'}'",
            fix="give the dataset folder, or list the images and labels in a CSV file",
        )
    logger.info("opened %r", ds)
    return ds


# ---- verification ------------------------------------------------------------------------------------------------
@dataclass
class ClassificationVerifyReport(VerifyReport):
    """What :func:`verify_classification_dataset` found (a :class:`~medimg.tasks.segment.data.VerifyReport` with
    classification fields; ``problems``/``warnings`` are (sample id, what, fix)).

    Attributes:
        task, class_names: of the dataset.
        class_counts: samples per class (multi-label: positives) over the checked samples.
        channels: channel count -> number of checked samples (as loaded).
        dtypes: voxel type in the file -> number of checked samples.
        n_excluded: files left out by the exclude patterns.
    """

    task: str = ""
    class_names: tuple[str, ...] = ()
    class_counts: dict[str, int] = field(default_factory=dict)
    channels: dict[int, int] = field(default_factory=dict)
    dtypes: dict[str, int] = field(default_factory=dict)
    n_excluded: int = 0

    def to_text(self) -> str:
        lines = self.to_text_header()
        lines += [f"PROBLEM {case}: {what}. Fix: {fix}" for case, what, fix in self.problems]
        lines += [f"warning {case}: {what}. Fix: {fix}" for case, what, fix in self.warnings]
        return "\n".join(lines)

    def to_text_header(self) -> list[str]:
        shapes = sorted({tuple(s) for s in self.shapes.values()})
        return [
            f"dataset {self.root}: {self.n_checked} of {self.n_cases} samples checked, {len(self.problems)} "
            f"problems, {len(self.warnings)} warnings",
            f"task {self.task}; class counts " + ", ".join(f"{k} {v}" for k, v in self.class_counts.items()),
            f"channels {self.channels}; types {self.dtypes}; {len(shapes)} distinct shapes"
            + (f" ({shapes[0]} .. {shapes[-1]})" if shapes else "") + f"; {self.n_excluded} files excluded",
        ]

    def raise_if_bad(self) -> None:
        """Raise :class:`InvalidParameterError` naming the first problem and the number of problems."""
        if self.problems:
            case, what, fix = self.problems[0]
            raise InvalidParameterError(
                f"dataset has {len(self.problems)} problem(s); first: sample '{case}': {what}", parameter="dataset",
                expected="a dataset that verifies cleanly", found=f"{len(self.problems)} problems in {self.root}",
                fix=f"{fix}; list every problem with verify_classification_dataset(ds).to_text()",
            )


def verify_classification_dataset(ds: ClassificationDataset, *,
                                  max_samples: int | None = None) -> ClassificationVerifyReport:
    """Read every sample (or the first ``max_samples``) and report what is wrong, without raising.

    Problems (would break training): unreadable files, a sample of the wrong dimensionality or channel count,
    NaN/Inf voxels, a class without samples (multi-label: without positives) in the whole dataset.
    Warnings: constant images, pixel-identical images (with the same or with conflicting labels).

    Example:
        >>> report = verify_classification_dataset(ds)  # doctest: +SKIP
        >>> report.ok, report.class_counts                # doctest: +SKIP
        (True, {'benign': 348, 'malignant': 172, 'normal': 108})
    """
    n = len(ds) if max_samples is None else max(0, min(len(ds), int(max_samples)))
    report = ClassificationVerifyReport(root=str(ds.source), n_cases=len(ds), n_checked=n, task=ds.task,
                                        class_names=tuple(ds.class_names), n_excluded=len(ds.excluded))
    for name, count in ds.class_counts.items():
        if count == 0:
            report.problems.append((name, f"class '{name}' has no {'positive ' if ds.task == 'multilabel' else ''}"
                                    "samples", "add samples of that class, or leave it out of class_names"))
    counts = np.zeros(ds.n_classes, np.int64)
    hashes: dict[str, int] = {}
    duplicates: list[tuple[int, int]] = []
    for i in range(n):
        sid = ds.ids[i]
        lab = ds.labels[i]
        counts += lab if ds.task == "multilabel" else np.eye(ds.n_classes, dtype=np.int64)[lab]
        try:
            image = ds.load_image(i)
            ds._check_dims(i, image)
        except MedimgError as exc:
            report.problems.append((sid, f"{type(exc).__name__}: {exc.path or ''} {exc.what}".replace("  ", " "),
                                    exc.fix or "see the message"))
            continue
        arr = image.voxels
        report.shapes[sid] = image.spatial_shape
        report.channels[arr.shape[0]] = report.channels.get(arr.shape[0], 0) + 1
        report.dtypes[str(image.dtype)] = report.dtypes.get(str(image.dtype), 0) + 1
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr))) if np.issubdtype(arr.dtype, np.inexact) else 0
        if bad:
            report.problems.append((sid, f"{bad} NaN/Inf voxels in '{ds.describe(i)}'", "replace them, or remove "
                                    "the file"))
            continue
        if arr.size and float(arr.max()) == float(arr.min()):
            report.warnings.append((sid, f"constant image (every value {float(arr.min()):g}) '{ds.describe(i)}'",
                                    "check the file; remove it if it is blank"))
        digest = hashlib.sha1(np.ascontiguousarray(arr).tobytes() + f"{arr.shape}{arr.dtype}".encode()).hexdigest()
        if digest in hashes:
            duplicates.append((hashes[digest], i))
        else:
            hashes[digest] = i
    for a, b in duplicates:
        same = np.array_equal(ds.labels[a], ds.labels[b])
        report.warnings.append((ds.ids[b], f"pixel-identical to '{ds.ids[a]}'" + (
            "" if same else f" but labelled differently ({_label_text(ds, a)} vs {_label_text(ds, b)})"),
            "remove one copy" + ("" if same else " and decide which label is right")))
    report.class_counts = {name: int(c) for name, c in zip(ds.class_names, counts)}
    logger.info("verified %s: %d problems, %d warnings", ds.source, len(report.problems), len(report.warnings))
    return report


def _label_text(ds: ClassificationDataset, i: int) -> str:
    lab = ds.labels[i]
    if ds.task == "multilabel":
        return "+".join(n for n, v in zip(ds.class_names, lab) if v) or "none"
    return ds.class_names[int(lab)]

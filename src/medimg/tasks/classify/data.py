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
(:func:`medimg.tasks.classify.preprocess.preprocess_sample`).
"""


from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.errors import ImageReadError, InvalidParameterError, MedimgError
from medimg.core.image import Image
from medimg.io.npz import MedMNISTFile
from medimg.plans.verify import VerifyReport
from medimg.tasks.classify.data_sources import (
    DEFAULT_EXCLUDE,
    IMAGE_EXTENSIONS,
    SPLIT_NAMES,
    SampleHeader,
    SampleRef,
    open_csv,
    open_folder,
    open_medmnist,
    read_sample_file,
)

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
    "make_classification_splits",
]

#: The classification tasks.
TASKS = ("binary", "multiclass", "multilabel")


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
        samples: Sequence[SampleRef],
        headers: Sequence[SampleHeader],
        channels: int,
        dims: int,
        excluded: Sequence[Path] = (),
        store: MedMNISTFile | None = None,
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
            arr = self._store.sample(s.split, s.index)
            image = Image.from_array(arr, metadata={"source_format": "npz", "source_path": str(self._source),
                                                    "spacing_source": "default_1mm"}, copy=False)
        else:
            image = read_sample_file(s.path)
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
        self.check_dims(i, image)
        vox = np.asarray(image.voxels, dtype=np.float32)
        return np.ascontiguousarray(vox[:, 0] if self._dims == 2 else vox)

    def check_dims(self, i: int | str, image: Image) -> None:
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
        ds = ClassificationDataset(**open_folder(src, splits, class_names, patterns, single_class_ok))
    elif src.suffix.lower() in (".csv", ".tsv"):
        ds = ClassificationDataset(**open_csv(src, splits, label_columns, class_names))
    elif src.suffix.lower() == ".npz":
        ds = ClassificationDataset(**open_medmnist(src, splits, class_names, single_class_ok))
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

    def to_text_header(self) -> list[str]:
        shapes = sorted({tuple(s) for s in self.shapes.values()})
        return [
            f"dataset {self.root}: {self.n_checked} of {self.n_cases} samples checked, {len(self.problems)} "
            f"problems, {len(self.warnings)} warnings",
            f"task {self.task}; class counts " + ", ".join(f"{k} {v}" for k, v in self.class_counts.items()),
            f"channels {self.channels}; types {self.dtypes}; {len(shapes)} distinct shapes"
            + (f" ({shapes[0]} .. {shapes[-1]})" if shapes else "") + f"; {self.n_excluded} files excluded",
        ]

    UNIT = "sample"

    def list_hint(self) -> str:
        return "verify_classification_dataset(ds).to_text()"


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
            ds.check_dims(i, image)
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


# ---- splits -----------------------------------------------------------------------------------------------------
def make_classification_splits(ids: Sequence[str], labels: np.ndarray, n_folds: int, seed: int, *,
                               groups: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """Stratified k-fold split by sample id: every sample is validated exactly once, classes spread over folds.

    Single-label: the groups of each class (a group's class is its most common one) are shuffled with ``seed``
    and dealt to the folds in turn, continuing where the previous class stopped, so every fold gets its share of
    each class and the folds have about equal size. Multi-label: the same with the label combination as stratum.
    With ``groups`` (sample id -> group id) whole groups go to one fold, so no patient is on both sides.

    Args:
        ids: sample ids.
        labels: (N,) class ids, or (N, K) 0/1 indicators (multi-label), in ``ids`` order.
        n_folds: number of folds, 2..number of groups.
        seed: shuffling seed.
        groups: optional sample id -> group id.

    Returns:
        one ``{"train": [...], "val": [...]}`` per fold, ids sorted.

    Raises:
        InvalidParameterError: ``n_folds`` outside 2..number of groups, or labels not matching ids.

    Example:
        >>> ids = [f"s{i}" for i in range(8)]
        >>> folds = make_classification_splits(ids, np.array([0, 0, 0, 0, 1, 1, 1, 1]), 2, 0)
        >>> [sorted(int(s[1:]) >= 4 for s in f["val"]) for f in folds]  # two of each class per fold
        [[False, False, True, True], [False, False, True, True]]
    """
    labels = np.asarray(labels)
    if labels.shape[0] != len(ids):
        raise InvalidParameterError("labels do not match the ids", parameter="labels", expected=f"{len(ids)} rows",
                                    found=labels.shape[0], fix="give one label per sample id")
    group_of = groups or {sid: sid for sid in ids}
    members: dict[str, list[int]] = defaultdict(list)
    for i, sid in enumerate(ids):
        members[group_of[sid]].append(i)
    keys = sorted(members)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= len(keys):
        raise InvalidParameterError("bad number of folds", parameter="--folds",
                                    expected=f"2..{len(keys)} (number of {'groups' if groups else 'samples'})",
                                    found=n_folds, fix="use fewer folds, or --fold all to train on every sample")

    def stratum(g: str) -> Any:
        rows = labels[members[g]]
        if rows.ndim == 2:
            return Counter(tuple(int(v) for v in r) for r in rows).most_common(1)[0][0]
        return int(np.bincount(rows.astype(np.int64)).argmax())

    strata: dict[Any, list[str]] = defaultdict(list)
    for g in keys:
        strata[stratum(g)].append(g)
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for s in sorted(strata):
        gs = list(strata[s])
        rng.shuffle(gs)
        for j, g in enumerate(gs):
            fold_of[g] = (offset + j) % n_folds
        offset += len(gs)
    folds = [sorted(sid for sid in ids if fold_of[group_of[sid]] == k) for k in range(n_folds)]
    return [{"train": sorted(s for j, f in enumerate(folds) if j != k for s in f), "val": folds[k]}
            for k in range(n_folds)]

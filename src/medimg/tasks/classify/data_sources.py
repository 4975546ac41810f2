"""Where classification samples come from: probing sample files, and reading the three dataset layouts.

* probing: :func:`probe_sample` reads a sample's header (channels, shape) without its voxels where the format
  allows it (PNG/JPEG/TIFF, NIfTI, NRRD/MHA, DICOM); :func:`read_sample_file` reads a sample file or series folder;
* layouts: :func:`open_folder` (class folders, optionally under split folders), :func:`open_csv` (a ``path``
  column and label columns) and :func:`open_medmnist` (a MedMNIST .npz, read through
  :class:`medimg.io.npz.MedMNISTFile`), each returning the keyword arguments of
  :class:`~medimg.tasks.classify.data.ClassificationDataset` (the rules are in that module's docstring);
* the CSV reader and column names shared with the prediction inputs (:mod:`~medimg.tasks.classify.inputs`).
"""

from __future__ import annotations

import csv
import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.errors import ImageReadError, InvalidParameterError, MedimgError
from medimg.core.image import Image
from medimg.io.npz import MEDMNIST_SPLITS, MedMNISTFile

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS", "SPLIT_NAMES", "DEFAULT_EXCLUDE", "PATH_COLUMNS", "LABEL_COLUMNS", "ID_COLUMNS",
    "SPLIT_COLUMNS", "GROUP_COLUMNS", "SampleHeader", "SampleRef", "file_suffix", "is_excluded", "is_visible",
    "probe_sample", "probe_all", "read_sample_file", "check_consistency", "find_column", "read_csv", "task_of",
    "open_folder", "open_csv", "open_medmnist", "path_column",
]

#: File extensions that are samples in class folders (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd",
                    ".npz", ".dcm")
#: Folder names / CSV ``split`` values recognised as data splits.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
#: File-name patterns that are not samples in class folders (BUSI-style ``*_mask.png``).
DEFAULT_EXCLUDE = ("_mask",)
#: The classification tasks.
_IGNORED_DIRS = ("__MACOSX",)
PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
LABEL_COLUMNS = ("label", "class")
ID_COLUMNS = ("id", "sample_id")
SPLIT_COLUMNS = ("split",)
GROUP_COLUMNS = ("group", "patient", "patient_id", "subject")
_MISSING = ("", "nan", "na", "n/a", "null")




def file_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def is_excluded(name: str, exclude: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(p.lower() in low for p in exclude)


def is_visible(path: Path) -> bool:
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


def probe_sample(path: Path) -> SampleHeader:
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
    image = read_sample_file(path)
    return SampleHeader(channels=channels_of(image.n_channels), shape=image.spatial_shape)


def channels_of(n: int) -> int:
    """Channels a sample gives after dropping alpha: grey+alpha -> 1, RGBA -> 3."""
    return {2: 1, 4: 3}.get(n, n)


def read_sample_file(path: Path) -> Image:
    """Read one sample file or series folder; PNG/JPEG/TIFF without the 'no pixel spacing' warning."""
    from medimg.io.api import detect_format, read

    if path.is_file() and detect_format(path) == "raster":
        from medimg.io.raster import read_raster

        image = read_raster(path, spacing=(1.0, 1.0))
        return image.with_metadata(spacing_source="default_1mm")
    return read(path)



@dataclass(frozen=True)
class SampleRef:
    """Where one sample is: its file or series folder (None for MedMNIST rows), split, row, group."""

    path: Path | None  # file or DICOM series folder; None for MedMNIST rows
    split: str
    index: int  # row in the MedMNIST split array
    group: str = ""



def task_of(n_classes: int, multilabel: bool) -> str:
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


def check_consistency(source: Path, headers: Sequence[SampleHeader], where: Sequence[str]) -> tuple[int, int]:
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


def probe_all(paths: Sequence[Path], context: Sequence[str]) -> list[SampleHeader]:
    headers = []
    for path, ctx in zip(paths, context):
        try:
            headers.append(probe_sample(path))
        except MedimgError as exc:
            raise ImageReadError(
                f"{ctx}: {exc.what}" if ctx else exc.what, path=exc.path or path, expected=exc.expected,
                found=exc.found, fix=exc.fix or "replace or remove the file",
            ) from exc
    return headers


def open_folder(root: Path, splits: tuple[str, ...] | None, class_names: Sequence[str] | None,
                 exclude: tuple[str, ...], single_class_ok: bool = False) -> dict[str, Any]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and is_visible(p))
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
        class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and is_visible(p)) if base.is_dir() else []
        loose = sorted(p for p in base.iterdir() if p.is_file() and file_suffix(p) in IMAGE_EXTENSIONS) \
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
            entries = sorted(p for p in cdir.iterdir() if is_visible(p))
            n_before = len(items)
            others: set[str] = set()
            for p in entries:
                if p.is_file() and file_suffix(p) not in IMAGE_EXTENSIONS:
                    others.add(file_suffix(p) or "no extension")
                    continue
                if is_excluded(p.name, exclude):
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
    headers = probe_all(paths, [""] * len(paths))
    channels, dims = check_consistency(root, headers, [str(p) for p in paths])
    lookup = {n: k for k, n in enumerate(names)}
    return dict(
        source=root, layout="folder", ids=ids, class_names=names, task=task_of(len(names), False),
        labels=[lookup[c] for c, _, _ in items], samples=[SampleRef(p, s, -1) for _, s, p in items],
        headers=headers, channels=channels, dims=dims, excluded=excluded,
    )


def find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    low = {c.strip().lower(): c for c in columns}
    return next((low[c] for c in candidates if c in low), None)


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
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


def path_column(columns: Sequence[str], path: Path) -> str:
    """The CSV column holding the image paths (one of :data:`PATH_COLUMNS`).

    Raises:
        ImageReadError: the CSV has none.
    """
    path_col = find_column(columns, PATH_COLUMNS)
    if path_col is None:
        raise ImageReadError("CSV has no path column", path=path, expected="a column named " + " or ".join(
            f"'{c}'" for c in PATH_COLUMNS), found=f"columns {columns}",
            fix="name the column holding the image paths 'path'")
    return path_col


def open_csv(path: Path, splits: tuple[str, ...] | None, label_columns: Sequence[str] | None,
              class_names: Sequence[str] | None) -> dict[str, Any]:
    columns, rows = read_csv(path)
    path_col = path_column(columns, path)
    id_col, split_col = find_column(columns, ID_COLUMNS), find_column(columns, SPLIT_COLUMNS)
    group_col = find_column(columns, GROUP_COLUMNS)
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
        label_col = find_column(columns, LABEL_COLUMNS)
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
    headers = probe_all(paths, context)
    channels, dims = check_consistency(path, headers, [f"{c}: {p}" for c, p in zip(context, paths)])
    return dict(
        source=path, layout="csv", ids=ids, class_names=names, task=task_of(len(names), multilabel), labels=labels,
        samples=[SampleRef(p, r[split_col] if split_col else "", -1, r[group_col] if group_col else "")
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


def open_medmnist(path: Path, splits: tuple[str, ...] | None,
                   class_names: Sequence[str] | None, single_class_ok: bool = False) -> dict[str, Any]:
    store = MedMNISTFile(path)
    available = [s for s in MEDMNIST_SPLITS if f"{s}_images" in store.headers]
    if not available or any(not k.startswith(MEDMNIST_SPLITS) for k in store.headers):
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
        samples += [SampleRef(None, s, i) for i in range(n)]
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
    channels, dims = check_consistency(path, headers, [f"{path}[{s.split}_images][{s.index}]" for s in samples])
    return dict(
        source=path, layout="medmnist", ids=ids, class_names=names, task=task_of(len(names), multilabel),
        labels=label_arr, samples=samples, headers=headers, channels=channels, dims=dims, store=store,
    )

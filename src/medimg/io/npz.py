"""NumPy ``.npz`` archives: medimg's own layout (voxels + geometry), generic arrays, and MedMNIST files.

Three layouts are read:

* **medimg** (written by :func:`write_npz`): ``voxels`` (C, Z, Y, X) and ``__medimg__``, a JSON string with
  spacing, origin, direction, space, kind, the JSON-able metadata and the history. Geometry is restored
  exactly (floats survive JSON unchanged).
* **MedMNIST** (``train_images``, ``train_labels``, ``val_images``, ... ``test_labels``): one sample is chosen
  with ``key`` (e.g. "train_images", or just "train") and ``index``; ``medimg.io.read(path, series="train:12")``
  and the command line's ``--series train:12`` say the same (:func:`npz_selection`). :func:`load_medmnist` returns
  whole splits; :class:`MedMNISTFile` is the lazy reader under both (headers at once, each array decompressed once
  and shared), which classification datasets read their samples through.
* **generic**: one array (or the one named by ``key``), shaped (Y, X), (Z, Y, X) or (C, Z, Y, X); with
  ``index`` the first axis is treated as a sample axis.

Pickled objects are never loaded (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import tokenize
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.checks import check_memory_budget, check_voxels, declared_nbytes
from medimg.core.enums import Kind, Space
from medimg.core.errors import ImageReadError, ImageWriteError, InvalidParameterError
from medimg.core.geometry import Geometry
from medimg.core.image import Image, Operation
from medimg.io.files import check_input, compound_suffix

logger = logging.getLogger(__name__)

__all__ = ["MEDIMG_NPZ_VERSION", "MEDMNIST_SPLITS", "MedMNISTFile", "load_medmnist", "medmnist_sample_axes",
           "npz_selection", "read_npz", "write_npz"]

#: Version of the ``__medimg__`` JSON written by :func:`write_npz`.
MEDIMG_NPZ_VERSION = 1
_META_KEY = "__medimg__"
_MEDMNIST_KEY = re.compile(r"^(train|val|test)_(images|labels)$")
#: The splits of a MedMNIST file, in order.
MEDMNIST_SPLITS = ("train", "val", "test")
# numpy's header parser raises TokenError/SyntaxError on a damaged header; hostile shapes raise Overflow/MemoryError;
# zipfile raises RuntimeError for an encrypted member and NotImplementedError for an unknown compression
_LOAD_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError, SyntaxError,
                tokenize.TokenError, OverflowError, MemoryError, NotImplementedError, RuntimeError)


class _Archive:
    """Lazy view of an .npz (or .npy) file: names and shapes from the headers, arrays loaded on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._npz: Any = None
        self._fh: Any = None
        self._arrays: dict[str, np.ndarray] = {}
        self.headers: dict[str, tuple[tuple[int, ...], np.dtype, bool]] = {}
        self._present: dict[str, int] = {}  # bytes of array data present in the archive member
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - kept open for lazy access, closed by close()
            if self._fh.read(6) == b"\x93NUMPY":  # a plain .npy file: size it from its header before loading
                self._fh.seek(0)
                shape, _, dtype = self._read_header(self._fh)
                self.headers["arr_0"] = (shape, dtype, False)
                self._present["arr_0"] = path.stat().st_size - self._fh.tell()
                self._check_size("arr_0", declared_nbytes(shape, dtype.itemsize))
            self._fh.seek(0)
            data = np.load(self._fh, allow_pickle=False)
            if isinstance(data, np.ndarray):
                self._arrays["arr_0"] = data
                self.headers["arr_0"] = (data.shape, data.dtype, False)
                self.close()
                return
            self._npz = data
            for name in data.files:
                with data.zip.open(name + ".npy") as fh:
                    self.headers[name] = self._read_header(fh)
                    self._present[name] = data.zip.getinfo(name + ".npy").file_size - fh.tell()
        except ImageReadError:
            self.close()
            raise
        except _LOAD_ERRORS as exc:
            self.close()
            raise self._error(exc) from exc

    @staticmethod
    def _read_header(fh: Any) -> tuple[tuple[int, ...], np.dtype, bool]:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        return tuple(int(v) for v in shape), np.dtype(dtype), bool(fortran)

    def _error(self, exc: BaseException) -> ImageReadError:
        return ImageReadError(
            "unreadable NPZ file", path=self.path, expected="a NumPy .npz archive without pickled objects",
            found=f"{type(exc).__name__}: {exc}", fix="check the file is complete; save it with numpy.savez",
        )

    @property
    def names(self) -> list[str]:
        return list(self.headers)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.headers[name][0]

    def __contains__(self, name: str) -> bool:
        return name in self.headers

    def _check_size(self, name: str, nbytes: int, what: str = "array") -> None:
        """Refuse, before decompressing, an array larger than the memory budget or than the bytes the member holds."""
        check_memory_budget(nbytes, path=self.path, what=f"'{name}' {what}")
        present = self._present.get(name)
        if present is not None and present < nbytes:
            shape, dtype, _ = self.headers[name]
            raise ImageReadError(
                "array member is shorter than its header declares", path=self.path,
                expected=f"{nbytes} bytes for '{name}' {shape} {dtype}", found=f"{max(present, 0)} bytes",
                fix="the file is damaged or truncated; save it again with numpy.savez",
            )

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            shape, dtype, _ = self.headers[name]
            self._check_size(name, declared_nbytes(shape, dtype.itemsize))
            try:
                self._arrays[name] = np.asarray(self._npz[name])
            except _LOAD_ERRORS as exc:
                raise self._error(exc) from exc
        return self._arrays[name]

    def row(self, name: str, index: int) -> np.ndarray:
        """``self[name][index]``, decompressing only up to that row for C-ordered arrays in an .npz."""
        shape, dtype, fortran = self.headers[name]
        if name in self._arrays or fortran or self._npz is None or dtype.hasobject:
            return self[name][index]
        row_shape = shape[1:]
        nbytes = declared_nbytes(row_shape, dtype.itemsize)
        check_memory_budget(nbytes, path=self.path, what=f"'{name}' sample")
        present = self._present.get(name)
        if present is not None and present < (index + 1) * nbytes:
            raise self._error(EOFError(f"'{name}' holds {max(present, 0)} bytes, fewer than sample {index} needs"))
        try:
            with self._npz.zip.open(name + ".npy") as fh:
                self._read_header(fh)
                remaining = index * nbytes
                while remaining > 0:
                    chunk = fh.read(min(remaining, 1 << 24))
                    if not chunk:
                        raise EOFError("archive member ended early")
                    remaining -= len(chunk)
                buf = fh.read(nbytes)
        except _LOAD_ERRORS as exc:
            raise self._error(exc) from exc
        if len(buf) != nbytes:
            raise self._error(EOFError(f"row {index} of '{name}' is incomplete"))
        return np.frombuffer(buf, dtype=dtype).reshape(row_shape).copy()

    def listing(self) -> str:
        return ", ".join(f"{k} {shape} {dtype}" for k, (shape, dtype, _) in self.headers.items())

    def close(self) -> None:
        if self._npz is not None:
            self._npz.close()
            self._npz = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _is_medmnist(arrays: _Archive) -> bool:
    names = arrays.names
    return bool(names) and all(_MEDMNIST_KEY.match(k) for k in names) and any(
        k.endswith("_images") for k in names)


def _spacing_of(spacing: Sequence[float] | None) -> tuple[tuple[float, float, float], str]:
    if spacing is None:
        return (1.0, 1.0, 1.0), "default_1mm"
    values = tuple(float(v) for v in spacing)
    if len(values) not in (2, 3) or min(values) <= 0 or not all(np.isfinite(values)):
        raise InvalidParameterError(
            "invalid voxel spacing", parameter="spacing", expected="(sx, sy) or (sx, sy, sz) in mm, all > 0",
            found=values, fix="give the voxel size in mm, e.g. spacing=(1.0, 1.0, 1.0)",
        )
    return (values[0], values[1], values[2] if len(values) == 3 else 1.0), "user"


def _read_medimg(arrays: _Archive, path: Path, kind: Kind | str | None) -> Image:
    try:
        info = json.loads(str(arrays[_META_KEY]))
        geometry = Geometry(
            spacing=info["spacing"], origin=info["origin"], direction=info["direction"],
            space=Space(info.get("space", "LPS")),
        )
        history = tuple(Operation(op["name"], op.get("params", {})) for op in info.get("history", []))
        metadata = dict(info.get("metadata", {}))
        stored_kind = Kind(info.get("kind", "intensity"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageReadError(
            "damaged medimg NPZ header", path=path, expected=f"a valid '{_META_KEY}' JSON entry",
            found=f"{type(exc).__name__}: {exc}", fix="write the file again with medimg.io.write",
        ) from exc
    if "voxels" not in arrays:
        raise ImageReadError("medimg NPZ without voxels", path=path, expected="an array named 'voxels'",
                             found=arrays.listing(), fix="write the file again with medimg.io.write")
    metadata.update({"source_format": "npz", "source_path": str(path), "spacing_source": "header"})
    check_voxels(arrays["voxels"], path=path)
    return Image(voxels=arrays["voxels"], geometry=geometry, kind=Kind(kind) if kind else stored_kind,
                 metadata=metadata, history=history)


def _medmnist_sample(
    arrays: _Archive, path: Path, key: str | None, index: int | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    image_keys = [k for k in arrays.names if k.endswith("_images")]
    split0 = image_keys[0][: -len("_images")]
    sizes = ", ".join(f"{k} ({arrays.shape(k)[0]} samples)" for k in image_keys)
    if key is None:
        raise InvalidParameterError(
            "MedMNIST file holds several splits", path=path, parameter="series",
            expected="one of " + ", ".join(image_keys), found="no key",
            fix=f"choose one sample: on the command line --series SPLIT:INDEX (e.g. --series {split0}:0), in Python "
            f"medimg.io.read(path, series='{split0}:0') (available: {sizes}); "
            "medimg.io.npz.load_medmnist reads whole splits",
        )
    if key in ("train", "val", "test"):
        key = f"{key}_images"
    if key not in image_keys:
        raise InvalidParameterError(
            "unknown MedMNIST image key", path=path, parameter="series", expected="one of " + ", ".join(image_keys),
            found=repr(key), fix=f"choose one of the image arrays ({sizes}) with --series SPLIT:INDEX (command line) "
            "or series='SPLIT:INDEX' (medimg.io.read)",
        )
    shape = arrays.shape(key)
    n = shape[0]
    if index is None or not -n <= int(index) < n:
        raise InvalidParameterError(
            "MedMNIST sample index missing or out of range", path=path, parameter="series",
            expected=f"0 <= index < {n}", found=index,
            fix=f"pick one of the {n} samples of '{key}': --series {key[: -len('_images')]}:INDEX on the command "
                f"line, series='{key[: -len('_images')]}:INDEX' in medimg.io.read",
        )
    index = int(index) % n
    sample = arrays.row(key, index)
    split = key[: -len("_images")]
    meta: dict[str, Any] = {"medmnist_split": split, "medmnist_index": index}
    label_key = f"{split}_labels"
    if label_key in arrays and arrays.shape(label_key)[:1] == (n,):
        meta["class_label"] = np.asarray(arrays[label_key][index]).tolist()
    return medmnist_sample_axes(sample), meta


def medmnist_sample_axes(sample: np.ndarray) -> np.ndarray:
    """One MedMNIST sample as (C, Z, Y, X): (H, W) grey -> (1, 1, H, W), (H, W, 3) RGB -> (3, 1, H, W),
    (D, H, W) volume -> (1, D, H, W). A view where possible (no copy).

    >>> [medmnist_sample_axes(np.zeros(s)).shape for s in [(28, 28), (28, 28, 3), (64, 64, 64)]]
    [(1, 1, 28, 28), (3, 1, 28, 28), (1, 64, 64, 64)]
    """
    if sample.ndim == 2:
        return sample[None, None]
    if sample.ndim == 3 and sample.shape[-1] == 3 and sample.shape[0] != 3:
        return np.moveaxis(sample, -1, 0)[:, None]
    return sample[None]


class MedMNISTFile:
    """A MedMNIST .npz opened once: the array headers at once, each array decompressed on first use and kept.

    The one MedMNIST reader: :func:`load_medmnist` and the classification datasets read through it. Arrays are
    read-only and shared by threads; pickling (e.g. for data-loader workers started with "spawn") keeps the path
    and headers and drops the arrays, so each process decompresses what it reads. Every array is sized against the
    memory budget before it is decompressed.

    Attributes:
        path: the file.
        headers: array name -> (shape, dtype), from the headers only.

    Raises:
        ImageReadError: the file is not a readable .npz (the constructor reads the headers).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        archive = _Archive(self.path)
        try:
            self.headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {
                k: (shape, dtype) for k, (shape, dtype, _) in archive.headers.items()}
        finally:
            archive.close()
        self._arrays: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "headers": self.headers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.headers = state["path"], state["headers"]
        self._arrays, self._lock = {}, threading.Lock()

    @property
    def is_medmnist(self) -> bool:
        """Only ``train|val|test`` ``_images``/``_labels`` arrays, at least one ``_images``."""
        return bool(self.headers) and all(_MEDMNIST_KEY.match(k) for k in self.headers) and any(
            k.endswith("_images") for k in self.headers)

    @property
    def splits(self) -> list[str]:
        """The splits whose images the file holds, in :data:`MEDMNIST_SPLITS` order."""
        return [s for s in MEDMNIST_SPLITS if f"{s}_images" in self.headers]

    def listing(self) -> str:
        return ", ".join(f"{k} {shape}" for k, (shape, _) in self.headers.items())

    def array(self, name: str) -> np.ndarray:
        """The whole array ``name`` (read-only), decompressed on the first call."""
        with self._lock:
            if name not in self._arrays:
                archive = _Archive(self.path)
                try:
                    arr = np.asarray(archive[name])
                finally:
                    archive.close()
                arr.flags.writeable = False
                self._arrays[name] = arr
                logger.debug("%s: decompressed %s %s", self.path, name, arr.shape)
            return self._arrays[name]

    def sample(self, split: str, index: int) -> np.ndarray:
        """Sample ``index`` of ``split`` as (C, Z, Y, X) (:func:`medmnist_sample_axes`)."""
        return medmnist_sample_axes(self.array(f"{split}_images")[index])


def npz_selection(series: str | int | None) -> tuple[str | None, int | None]:
    """``(key, index)`` from a selection string as ``medimg.io.read(series=...)`` and the CLI's ``--series`` take it.

    ``"KEY:INDEX"`` (e.g. "test:0" for a MedMNIST file, "images:3"), ``"KEY"``, or an index alone (an int or
    digits) along the first axis of the file's only array.

    >>> npz_selection("test:12"), npz_selection("images"), npz_selection(3)
    (('test', 12), ('images', None), (None, 3))
    """
    if series is None:
        return None, None
    if isinstance(series, (int, np.integer)):
        return None, int(series)
    text = str(series).strip()
    key, sep, idx = text.rpartition(":")
    if not sep:
        return (None, int(text)) if text.lstrip("-").isdigit() else (text, None)
    if not idx.strip().lstrip("-").isdigit():
        raise InvalidParameterError(
            "invalid NPZ selection", parameter="series", expected="KEY, KEY:INDEX or INDEX, e.g. test:0",
            found=repr(series), fix="write the sample number after the colon, e.g. --series test:0",
        )
    return key or None, int(idx)


def read_npz(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    index: int | None = None,
    kind: Kind | str | None = None,
    spacing: Sequence[float] | None = None,
) -> Image:
    """Read an image from a .npz file (medimg, MedMNIST or generic layout, see the module docstring).

    Args:
        path: the .npz file (a plain .npy works too).
        key: the array to read; required when a generic file holds several arrays and for MedMNIST files
            ("train_images", "val_images", "test_images" or just "train"/"val"/"test").
        index: sample number along the first axis (required for MedMNIST; only that sample is decompressed).
        kind: "intensity" (default; medimg files keep their stored kind), "label" or "probability".
        spacing: (sx, sy[, sz]) mm for arrays without geometry; default 1 mm, recorded in
            ``metadata["spacing_source"]`` as "default_1mm". Ignored for medimg files, which carry geometry.

    Returns:
        Image. MedMNIST samples carry ``medmnist_split``, ``medmnist_index`` and ``class_label`` metadata.

    Raises:
        ImageReadError: missing/empty/corrupt file, no arrays, a non-numeric or wrongly shaped array.
        InvalidParameterError: ``key``/``index`` missing or wrong (the message lists what is available).

    Example:
        >>> import tempfile, pathlib
        >>> from medimg.testing import phantom
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npz"
        >>> img = phantom((4, 5, 6))
        >>> write_npz(img, p)
        >>> read_npz(p).geometry == img.geometry
        True
    """
    p = check_input(path, allow_dir=False)
    arrays = _Archive(p)
    try:
        return _read(arrays, p, key=key, index=index, kind=kind, spacing=spacing)
    finally:
        arrays.close()


def _read(
    arrays: _Archive, p: Path, *, key: str | None, index: int | None, kind: Kind | str | None,
    spacing: Sequence[float] | None,
) -> Image:
    if not arrays.names:
        raise ImageReadError(
            "NPZ file holds no arrays", path=p, expected="at least one array", found="an empty archive",
            fix="save the image array into it, e.g. numpy.savez(path, image=array)",
        )
    if _META_KEY in arrays:
        return _read_medimg(arrays, p, kind)
    geometry_spacing, spacing_source = _spacing_of(spacing)
    metadata: dict[str, Any] = {"source_format": "npz", "source_path": str(p), "spacing_source": spacing_source}
    if _is_medmnist(arrays):
        arr, extra = _medmnist_sample(arrays, p, key, index)
        metadata.update(extra)
    else:
        names = arrays.names
        if key is None:
            if len(names) > 1:
                raise InvalidParameterError(
                    "NPZ file holds several arrays", path=p, parameter="series",
                    expected="one of " + ", ".join(names), found="no key",
                    fix=f"choose one ({arrays.listing()}) with --series KEY (command line) or series='KEY' "
                        "(medimg.io.read); KEY:INDEX picks one sample along the first axis",
                )
            key = names[0]
        if key not in arrays:
            raise InvalidParameterError(
                "no such array in the NPZ file", path=p, parameter="series", expected="one of " + ", ".join(names),
                found=repr(key), fix=f"choose one of: {arrays.listing()} (--series KEY, or series='KEY')",
            )
        metadata["npz_key"] = key
        shape = arrays.shape(key)
        if index is not None:
            n = shape[0] if shape else 0
            if not -n <= int(index) < n:
                raise InvalidParameterError(
                    "sample index out of range", path=p, parameter="series", expected=f"0 <= index < {n}",
                    found=index, fix=f"'{key}' has shape {shape}; pick a sample along its first axis "
                    f"(--series {key}:INDEX, or series='{key}:INDEX')",
                )
            arr = arrays.row(key, int(index) % n)
            metadata["npz_index"] = int(index) % n
        else:
            arr = arrays[key]
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ImageReadError(
            "array is not numeric", path=p, expected="a numeric array", found=f"'{key}' of dtype {arr.dtype}",
            fix="choose a numeric array with --series KEY (command line) or series='KEY' (medimg.io.read)",
        )
    if arr.ndim not in (2, 3, 4) or min(arr.shape) < 1:
        raise ImageReadError(
            "array has the wrong shape for an image", path=p, expected="(Y, X), (Z, Y, X) or (C, Z, Y, X)",
            found=f"'{key}' of shape {arr.shape}",
            fix=f"choose another array, or one sample of this one: --series {key}:INDEX (command line), "
                f"series='{key}:INDEX' (medimg.io.read)",
        )
    check_voxels(arr, path=p)
    image = Image.from_array(arr, spacing=geometry_spacing, kind=Kind(kind) if kind else Kind.INTENSITY,
                             metadata=metadata, copy=False)
    logger.debug("read NPZ %s: shape %s, %s", p, image.shape, image.dtype)
    return image


def load_medmnist(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All splits of a MedMNIST .npz file as ``{"train": (images, labels), "val": ..., "test": ...}``.

    Images keep MedMNIST's layout: (N, H, W), (N, H, W, 3) or (N, D, H, W); labels are (N, k) (read-only
    arrays, through :class:`MedMNISTFile`). Splits absent from the file are absent from the result.

    Raises:
        ImageReadError: the file is unreadable or not in the MedMNIST layout, or a split lacks its labels.
    """
    p = check_input(path, allow_dir=False)
    file = MedMNISTFile(p)
    if not file.is_medmnist:
        raise ImageReadError(
            "not a MedMNIST file", path=p, expected="arrays train_images, train_labels, val_images, ...",
            found=file.listing() or "no arrays", fix="use read_npz for other NPZ files",
        )
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in file.splits:
        n = file.headers[f"{split}_images"][0][0]
        label_key = f"{split}_labels"
        if label_key not in file.headers or file.headers[label_key][0][:1] != (n,):
            raise ImageReadError(
                f"MedMNIST split '{split}' has no matching labels", path=p, expected=f"{label_key} with {n} rows",
                found="missing" if label_key not in file.headers else f"shape {file.headers[label_key][0]}",
                fix="use the original MedMNIST file",
            )
        out[split] = (file.array(f"{split}_images"), file.array(label_key))
    return out


def _jsonable_metadata(metadata: Any) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for k, v in dict(metadata).items():
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            logger.debug("metadata entry %r is not JSON-able; not stored in NPZ", k)
            continue
        kept[str(k)] = v
    return kept


def write_npz(image: Image, path: str | os.PathLike[str]) -> None:
    """Write an Image to exactly ``path`` as a compressed medimg .npz (voxels + geometry + kind + metadata).

    Only JSON-able metadata entries are stored (others are skipped and logged at debug level); the history is
    stored too. Identifying values (source path, source UIDs, series description) are not stored unless the image
    carries ``metadata["keep_identifiers"] = True`` (see :func:`medimg.io.deid.deidentify_metadata`).
    :func:`read_npz` restores voxels (same dtype) and geometry exactly.

    Raises:
        ImageWriteError: the extension is not .npz, or the file cannot be written.
    """
    p = Path(path)
    if compound_suffix(p) != ".npz":
        raise ImageWriteError(
            "wrong extension for NPZ", path=p, expected="'.npz'", found=f"'{compound_suffix(p) or 'none'}'",
            fix="name the output e.g. out.npz",
        )
    from medimg.io.deid import KEEP_IDENTIFIERS, deidentify_metadata, keeps_identifiers

    # no identifying values unless the image was opted in (medimg convert --keep-identifiers)
    metadata = dict(image.metadata) if keeps_identifiers(image) else deidentify_metadata(image.metadata)
    metadata.pop(KEEP_IDENTIFIERS, None)
    g = image.geometry
    info = {
        "format_version": MEDIMG_NPZ_VERSION,
        "spacing": list(g.spacing),
        "origin": list(g.origin),
        "direction": [list(row) for row in g.direction],
        "space": g.space.value,
        "kind": image.kind.value,
        "metadata": _jsonable_metadata(metadata),
        "history": [op.to_dict() for op in image.history],
    }
    try:
        header = json.dumps(info, allow_nan=False)
    except (TypeError, ValueError):  # history params are already JSON-friendly; metadata filtered above
        info["history"] = []
        header = json.dumps(info, allow_nan=False, default=str)
    try:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, voxels=np.asarray(image.voxels), **{_META_KEY: np.array(header)})
    except OSError as exc:
        raise ImageWriteError(
            "cannot write NPZ", path=p, found=f"{type(exc).__name__}: {exc}",
            fix="check the folder exists, is writable and has free space",
        ) from exc
    logger.debug("wrote NPZ %s: shape %s, %s", p, image.shape, image.dtype)

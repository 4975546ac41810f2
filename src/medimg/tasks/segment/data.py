"""Segmentation data: one interface over datasets on disk, a verification pass that reports every problem, the
k-fold splits of a dataset's cases, and the cases of a folder given to prediction.

Two layouts are understood:

* **nnU-Net raw** (``dataset.json`` + ``imagesTr/`` + ``labelsTr/``): read through
  :class:`medimg.io.datasets.NnUNetDataset`; label values and names come from ``dataset.json``.
* **2D folders**: ``images/`` beside ``masks/`` or ``labels/``, PNG/TIFF/JPEG, grey or RGB. An image and its
  mask are matched by file stem: the same stem (``a.png`` / ``a.png``), or the image stem followed by a
  suffix such as ``_mask``, ``_Mask``, ``_label``, ``_seg``, ``_gt``, ``_annotation`` (``000_HC.png`` /
  ``000_HC_Mask.png``). When a folder mixes grey and RGB images, grey images are repeated into three
  channels so that every case has the same number of channels. Pixel spacing is 1 mm unless a CSV file in the
  root has a ``filename`` column and a ``pixel size`` column (the HC18 ``pixel_size_and_HC.csv``).

Mask conventions for 2D layouts (documented, applied on :meth:`SegDataset.load`):

* an RGB(A) mask whose colour channels are equal is read as its first channel;
* a mask whose values are all in {0, 255} is a binary mask: 255 becomes 1;
* an instance map (one id per object, e.g. 0..N nuclei) is kept as it is unless the dataset is opened with
  ``foreground_only=True``, which turns every non-zero value into 1 (``label_values == [0, 1]``).

Splits: :func:`make_splits` (k folds by case, seeded; whole groups of :func:`case_groups` stay in one fold).

Prediction inputs (a folder of ``CASE_0000.nii.gz`` ... files) are grouped and read by :mod:`medimg.io.cases`.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from medimg.core.enums import Kind
from medimg.core.errors import GeometryMismatchError, ImageReadError, InvalidParameterError, MedimgError
from medimg.core.image import Image
from medimg.plans.verify import VerifyReport

logger = logging.getLogger(__name__)

__all__ = ["SegDataset", "VerifyReport", "verify_dataset", "MASK_SUFFIXES"]

_RASTER = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: Suffixes after the image stem that name its mask in a 2D layout (compared case-insensitively).
MASK_SUFFIXES = ("mask", "masks", "label", "labels", "seg", "segmentation", "gt", "annotation", "annot")
#: Above this many distinct non-zero values a 2D label map is reported as a probable instance map.
_INSTANCE_HINT = 20


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def _match_masks(images: list[Path], masks: list[Path]) -> tuple[dict[str, tuple[Path, Path]], list[Path],
                                                                     list[Path]]:
    """Pair images with masks by stem. Returns (case -> (image, mask), unmatched images, unmatched masks)."""
    by_stem = {_stem(m): m for m in masks}
    used: set[str] = set()
    pairs: dict[str, tuple[Path, Path]] = {}
    lonely: list[Path] = []
    for img in images:
        s = _stem(img)
        found = by_stem.get(s)
        if found is None:
            for sep in ("_", "-", "."):
                for suffix in MASK_SUFFIXES:
                    for cand in (s + sep + suffix, s + sep + suffix.capitalize(), s + sep + suffix.upper()):
                        if cand in by_stem:
                            found = by_stem[cand]
                            break
                    if found is not None:
                        break
                if found is not None:
                    break
        if found is None:
            lonely.append(img)
            continue
        used.add(_stem(found))
        pairs[s] = (img, found)
    return pairs, lonely, [m for m in masks if _stem(m) not in used]


def _read_spacing_csv(root: Path) -> dict[str, float]:
    """filename -> pixel size (mm) from a CSV in ``root`` with 'filename' and 'pixel size' columns."""
    for path in sorted(root.glob("*.csv")):
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                cols = reader.fieldnames or []
                name_col = next((c for c in cols if c.strip().lower() in ("filename", "file", "image")), None)
                size_col = next((c for c in cols if "pixel size" in c.lower() or "pixel_size" in c.lower()), None)
                if name_col is None or size_col is None:
                    continue
                out = {}
                for row in reader:
                    try:
                        out[row[name_col].strip()] = float(row[size_col])
                    except (TypeError, ValueError):
                        continue
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            logger.warning("%s: cannot read pixel sizes (%s); using 1 mm", path, exc)
            continue
        if out:
            logger.debug("pixel sizes of %d images from %s", len(out), path)
            return out
    return {}


def _mask_array(arr: np.ndarray, path: Path) -> np.ndarray:
    """A (Y, X) integer label array from a raster mask (RGB with equal channels -> first channel)."""
    if arr.ndim == 3:
        colour = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        if not all(np.array_equal(colour[..., 0], colour[..., c]) for c in range(1, colour.shape[-1])):
            raise ImageReadError(
                "colour mask with differing channels", path=path, expected="a grey mask, or RGB with R == G == B",
                found=f"{arr.shape[-1]} channels that differ", fix="convert the mask to one label value per pixel",
            )
        arr = colour[..., 0]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(arr == np.round(arr)):
            raise ImageReadError("mask holds non-integer values", path=path, expected="integer labels",
                                 found=str(arr.dtype), fix="save the mask with integer label values")
        arr = arr.astype(np.int32)
    return arr


class SegDataset:
    """A segmentation dataset: case ids, channels, labels, and ``load(case_id) -> (image, label)``.

    Build one with :meth:`SegDataset.open`, which detects the layout.

    Attributes:
        root: the dataset folder.
        layout: "nnunet" or "2d".
        cases: case ids, sorted.
        dims: 3 for volumes, 2 for slice datasets.
        channel_names: one name per image channel ("MRI", "CT", "R", "G", "B", "grey", ...).
        label_values: the label values in the files (index = class id).
        class_names: one name per label value.
        foreground_only: 2D layouts only: every non-zero mask value becomes 1.
        unmatched_images, unmatched_masks: 2D layouts: files without a partner (reported by verify).
    """

    def __init__(self, root: Path, layout: str, *, foreground_only: bool = False) -> None:
        self.root = root
        self.layout = layout
        self.foreground_only = bool(foreground_only)
        self.cases: list[str] = []
        self.dims = 3
        self.channel_names: list[str] = []
        self.declared_labels: dict[str, int] = {}
        self.unmatched_images: list[Path] = []
        self.unmatched_masks: list[Path] = []
        self._nn: Any = None
        self._pairs: dict[str, tuple[Path, Path]] = {}
        self._spacing: dict[str, float] = {}
        self._rgb = False
        self._label_values: list[int] | None = None

    # ---- construction --------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str], *, foreground_only: bool = False) -> SegDataset:
        """Open a dataset folder in the nnU-Net raw layout or the 2D images/ + masks/ (or labels/) layout.

        Args:
            root: the dataset folder.
            foreground_only: turn every non-zero label into 1 (binary segmentation of an instance map).

        Raises:
            ImageReadError: the folder is missing, holds neither layout, or has no image/mask pairs.

        Example:
            >>> ds = SegDataset.open("../shared/data/hippocampus")  # doctest: +SKIP
            >>> image, label = ds.load(ds.cases[0])                   # doctest: +SKIP
        """
        path = Path(root).expanduser()
        if not path.is_dir():
            raise ImageReadError("dataset folder not found", path=path, expected="a folder",
                                 found="no such folder" if not path.exists() else "a file",
                                 fix="give the folder holding dataset.json + imagesTr/, or images/ + masks/")
        if (path / "dataset.json").is_file():
            return cls._open_nnunet(path, foreground_only)
        mask_dir = next((path / n for n in ("masks", "labels") if (path / n).is_dir()), None)
        if (path / "images").is_dir() and mask_dir is not None:
            return cls._open_2d(path, mask_dir, foreground_only)
        raise ImageReadError(
            "not a segmentation dataset folder", path=path,
            expected="dataset.json + imagesTr/ + labelsTr/ (nnU-Net), or images/ + masks/ (or labels/)",
            found="folders: " + (", ".join(sorted(p.name for p in path.iterdir() if p.is_dir())) or "none"),
            fix="arrange the files in one of the two layouts",
        )

    @classmethod
    def _open_nnunet(cls, path: Path, foreground_only: bool) -> SegDataset:
        from medimg.io.datasets import NnUNetDataset

        nn = NnUNetDataset(path)
        ds = cls(path, "nnunet", foreground_only=foreground_only)
        ds._nn = nn
        ds.cases = list(nn.cases)
        ds.channel_names = [nn.channel_names[c] for c in sorted(nn.channel_names)]
        ds.declared_labels = dict(nn.labels)
        ds.dims = 3
        if ds.declared_labels and not foreground_only:
            ds._label_values = sorted(set(ds.declared_labels.values()))
        return ds

    @classmethod
    def _open_2d(cls, path: Path, mask_dir: Path, foreground_only: bool) -> SegDataset:
        def listing(folder: Path) -> list[Path]:
            return sorted(p for p in folder.iterdir()
                          if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _RASTER)

        images, masks = listing(path / "images"), listing(mask_dir)
        pairs, lonely_images, lonely_masks = _match_masks(images, masks)
        if not pairs:
            raise ImageReadError(
                "dataset has no image/mask pairs", path=path,
                expected=f"PNG/TIFF/JPEG files in images/ with partners in {mask_dir.name}/ (same stem, or stem "
                "+ '_mask')", found=f"{len(images)} images, {len(masks)} masks, 0 pairs",
                fix="put the images and masks in the folders and name each mask like its image",
            )
        ds = cls(path, "2d", foreground_only=foreground_only)
        ds._pairs = pairs
        ds.cases = sorted(pairs)
        ds.unmatched_images, ds.unmatched_masks = lonely_images, lonely_masks
        ds.dims = 2
        ds._spacing = _read_spacing_csv(path)
        modes = set()
        for img, _ in pairs.values():
            try:
                with PILImage.open(img) as pil:
                    modes.add(pil.mode)
            except (OSError, ValueError) as exc:
                logger.debug("%s: unreadable header (%s); reported on load", img, exc)
        ds._rgb = any(m not in ("L", "I", "I;16", "I;16B", "F", "1", "LA") for m in modes)
        ds.channel_names = ["R", "G", "B"] if ds._rgb else ["grey"]
        if lonely_images or lonely_masks:
            logger.warning("%s: %d images without a mask and %d masks without an image are left out", path,
                           len(lonely_images), len(lonely_masks))
        return ds

    # ---- description ---------------------------------------------------------------------------------------
    @property
    def label_values(self) -> list[int]:
        """Label values, index = class id: from dataset.json, or found in the masks (read once, then kept)."""
        if self.foreground_only:
            return [0, 1]
        if self._label_values is None:
            found: set[int] = set()
            for case in self.cases:
                found.update(int(v) for v in np.unique(self.load_label(case).voxels))
            self._label_values = sorted(found | {0})
        return list(self._label_values)

    @property
    def class_names(self) -> list[str]:
        if self.foreground_only:
            return ["background", "foreground"]
        names = {v: k for k, v in self.declared_labels.items()}
        values = self.label_values
        if not names and values == [0, 1]:
            return ["background", "foreground"]
        return [names.get(v, "background" if v == 0 else f"label_{v}") for v in values]

    @property
    def name(self) -> str:
        return self._nn.name if self._nn is not None and self._nn.name else self.root.name

    def __len__(self) -> int:
        return len(self.cases)

    def __repr__(self) -> str:
        return (f"SegDataset(root='{self.root}', layout={self.layout}, cases={len(self.cases)}, dims={self.dims}, "
                f"channels={self.channel_names})")

    def files(self, case_id: str) -> tuple[list[Path], Path]:
        """The image (channel) files and the label file of a case."""
        if self._nn is not None:
            return self._nn.files(case_id)
        if case_id not in self._pairs:
            raise InvalidParameterError("unknown case id", parameter="case_id",
                                        expected=f"one of {len(self.cases)} cases", found=repr(case_id),
                                        fix="take ids from dataset.cases")
        img, mask = self._pairs[case_id]
        return [img], mask

    def spacing(self, case_id: str) -> tuple[float, float, float]:
        """Voxel spacing (sx, sy, sz) mm of a case from the file header (2D: the pixel-size CSV, else 1 mm)."""
        return self.header(case_id)[0]

    def header(self, case_id: str) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
        """(spacing xyz mm, shape zyx) of a case without reading its voxels where the format allows it."""
        paths, _ = self.files(case_id)
        if self._nn is None:
            with PILImage.open(paths[0]) as pil:
                w, h = pil.size
            s = self._spacing.get(paths[0].name, 1.0)
            return (s, s, 1.0), (1, int(h), int(w))
        p = paths[0]
        if p.name.endswith((".nii", ".nii.gz")) and p.is_file():
            import nibabel as nib

            try:
                nimg = nib.load(str(p))
                zooms = [float(z) for z in nimg.header.get_zooms()[:3]] + [1.0] * 3
                shape = [int(v) for v in nimg.shape[:3]] + [1] * 3
                return (zooms[0], zooms[1], zooms[2]), (shape[2], shape[1], shape[0])
            except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
                logger.debug("%s: header read failed (%s); reading the image", p, exc)
        img = self._nn.load_image(case_id)
        return img.spacing, img.spatial_shape

    # ---- loading -------------------------------------------------------------------------------------------
    def load_image(self, case_id: str) -> Image:
        """The image of a case, (C, Z, Y, X); 2D layouts give Z = 1 and grey images repeated to RGB if needed."""
        if self._nn is not None:
            return self._nn.load_image(case_id)
        from medimg.io.raster import read_raster

        paths, _ = self.files(case_id)
        s = self._spacing.get(paths[0].name)
        img = read_raster(paths[0], spacing=(s, s) if s else (1.0, 1.0))
        vox = img.voxels
        if vox.shape[0] == 4:
            vox = vox[:3]  # RGBA with a real alpha channel: the colour is the image
        if self._rgb and vox.shape[0] == 1:
            vox = np.repeat(vox, 3, axis=0)
        elif not self._rgb and vox.shape[0] == 2:
            vox = vox[:1]
        meta = dict(img.metadata)
        meta.update({"case_id": case_id, "channel_names": list(self.channel_names),
                     "spacing_source": "csv" if s else "default_1mm"})
        return img.replace(voxels=np.ascontiguousarray(vox), metadata=meta)

    def load_label(self, case_id: str) -> Image:
        """The label map of a case (kind=label), with the 2D mask conventions of this module applied."""
        if self._nn is not None:
            label = self._nn.load_label(case_id)
            if self.foreground_only:
                label = label.replace(voxels=(label.voxels > 0).astype(np.uint8))
            return label
        _, mask = self.files(case_id)
        if not mask.is_file():
            raise ImageReadError("label file is missing", path=mask, expected=f"the mask of case '{case_id}'",
                                 found="no such file", fix="add the mask or remove the image")
        try:
            with PILImage.open(mask) as pil:
                arr = np.asarray(pil)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageReadError("unreadable mask", path=mask, found=f"{type(exc).__name__}: {exc}",
                                 fix="export the mask again as PNG") from exc
        arr = _mask_array(arr, mask)
        values = np.unique(arr)
        if self.foreground_only:
            arr = (arr > 0).astype(np.uint8)
        elif values.size and values.max() == 255 and set(values.tolist()) <= {0, 255}:
            arr = (arr == 255).astype(np.uint8)
        s = self._spacing.get(self.files(case_id)[0][0].name, 1.0)
        return Image.from_array(arr, spacing=(s, s), kind=Kind.LABEL,
                                metadata={"case_id": case_id, "source_path": str(mask)})

    def load(self, case_id: str) -> tuple[Image, Image]:
        """``(image, label)`` of a case on the same grid.

        Raises:
            InvalidParameterError: unknown case id.
            ImageReadError: a missing or unreadable file (named).
            GeometryMismatchError: image and label on different grids (the label file is named).
        """
        if self._nn is not None and not self.foreground_only:
            return self._nn.load(case_id)
        image, label = self.load_image(case_id), self.load_label(case_id)
        try:
            image.check_same_grid(label, what=f"image and label of case '{case_id}'")
        except GeometryMismatchError as exc:
            raise GeometryMismatchError(exc.what, path=self.files(case_id)[1], expected=exc.expected,
                                        found=exc.found, fix=exc.fix) from exc
        return image, label


# ---- verification ----------------------------------------------------------------------------------------------
def verify_dataset(ds: SegDataset, *, max_cases: int | None = None) -> VerifyReport:
    """Load every case (or the first ``max_cases``) and report what is wrong, without raising.

    Checks per case: files present and readable, image/label on the same grid, label values declared in
    dataset.json, NaN/Inf voxels, consistent channel count, empty label maps (warning); per dataset: images or
    masks without a partner (2D layouts) and probable instance maps (warning).

    Example:
        >>> report = verify_dataset(SegDataset.open("../shared/data/hippocampus"))  # doctest: +SKIP
        >>> report.ok                                                                 # doctest: +SKIP
        True
    """
    cases = ds.cases if max_cases is None else ds.cases[: max(0, int(max_cases))]
    report = VerifyReport(root=str(ds.root), n_cases=len(ds.cases), n_checked=len(cases))
    for img in ds.unmatched_images:
        report.problems.append((_stem(img), f"image '{img}' has no mask",
                                f"add its mask to the mask folder, named '{_stem(img)}{img.suffix}'"))
    for mask in ds.unmatched_masks:
        report.warnings.append((_stem(mask), f"mask '{mask}' has no image", "remove it or add its image"))
    declared = set(ds.declared_labels.values()) if ds.declared_labels and not ds.foreground_only else None
    n_channels = len(ds.channel_names)
    instance_cases: list[str] = []
    for case in cases:
        try:
            image, label = ds.load(case)
        except MedimgError as exc:
            report.problems.append((case, f"{type(exc).__name__}: {exc.path or ''} {exc.what}".replace("  ", " "),
                                    exc.fix or "see the message"))
            continue
        report.shapes[case] = image.spatial_shape
        if image.n_channels != n_channels:
            report.problems.append((case, f"{image.n_channels} image channels, the dataset names {n_channels}",
                                    "give every case the same channels"))
        vox = image.voxels
        if np.issubdtype(vox.dtype, np.floating):
            bad = int(vox.size - np.count_nonzero(np.isfinite(vox)))
            if bad:
                report.problems.append((case, f"{bad} NaN/Inf voxels in the image", "replace them before training"))
        values = np.unique(label.voxels)
        if declared is not None:
            extra = sorted(int(v) for v in values if int(v) not in declared)
            if extra:
                report.problems.append((case, f"label values {extra} not in dataset.json labels {sorted(declared)}"
                                        f" (file {ds.files(case)[1]})",
                                        "correct the label map, or add the values to 'labels' in dataset.json"))
        if values.size == 1 and values[0] == 0:
            report.warnings.append((case, "empty label map (background only)",
                                    "fine for negatives; otherwise check the label file"))
        elif ds.dims == 2 and not ds.foreground_only and np.count_nonzero(values) > _INSTANCE_HINT:
            instance_cases.append(case)
    if instance_cases:
        report.warnings.append((instance_cases[0], f"{len(instance_cases)} cases have more than {_INSTANCE_HINT} "
                                "distinct label ids: probably instance maps",
                                "open with SegDataset.open(root, foreground_only=True) for binary labels"))
    logger.info("verified %s: %d problems, %d warnings", ds.root, len(report.problems), len(report.warnings))
    return report

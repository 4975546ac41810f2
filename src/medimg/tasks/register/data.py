"""Registration datasets and the one preprocessing that training and prediction share.

A registration dataset is a set of images of one kind (and, optionally, their label maps): an nnU-Net raw folder
(``dataset.json`` + ``imagesTr/`` + ``labelsTr/``), the 2D ``images/`` + ``masks/`` layout, or a plain folder of
images (NIfTI, NRRD, MHA; no labels). Pairs are drawn from it at training time.

:func:`canonical_grid` puts an image on the plan's grid: the plan's spacing, the image's own direction, centred on
the image's centre. :func:`to_canonical` resamples an image (normalised to [0, 1] by percentiles) or a label map
(nearest neighbour) onto such a grid, optionally through a transform (the pre-alignment).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image

logger = logging.getLogger(__name__)

__all__ = ["RegDataset", "canonical_grid", "to_canonical", "normalise", "image_centre"]

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


# ---- the shared preprocessing ---------------------------------------------------------------------------------
def normalise(voxels: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Clip to the image's percentiles and scale to [0, 1] (float32); a constant image gives zeros."""
    arr = np.asarray(voxels, dtype=np.float32)
    lo, hi = np.percentile(arr, [float(percentiles[0]), float(percentiles[1])])
    if not hi > lo:
        return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _sitk(image: Image, voxels: np.ndarray | None = None) -> sitk.Image:
    from medimg.io.sitk_bridge import to_sitk

    if voxels is not None:
        image = image.replace(voxels=voxels[None] if voxels.ndim == image.voxels.ndim - 1 else voxels)
    return to_sitk(image, channel=0)


def image_centre(img: sitk.Image) -> np.ndarray:
    """Physical centre of a SimpleITK image's voxel grid (LPS mm)."""
    size = np.asarray(img.GetSize(), dtype=float)
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2)))


def canonical_grid(image: Image | sitk.Image, spacing: Sequence[float], grid: Sequence[int], *, divisor: int = 1,
                   cover: bool = False) -> sitk.Image:
    """An empty SimpleITK reference image: ``spacing`` (sx, sy[, sz]), the image's direction, ``grid`` voxels
    ((Z,) Y, X), centred on the image's centre. With ``cover`` the grid grows (to multiples of ``divisor``) until it
    covers the whole image."""
    img = image if isinstance(image, sitk.Image) else _sitk(image)
    dims = img.GetDimension()
    spacing = np.asarray(spacing, dtype=float)[:dims]
    size = np.asarray(list(grid)[::-1], dtype=int)  # x, y[, z]
    if cover:
        extent = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing())
        need = np.ceil(extent / spacing).astype(int)
        need = ((need + divisor - 1) // divisor) * divisor
        size = np.maximum(size, need)
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dims, dims)
    centre = image_centre(img)
    origin = centre - direction @ (spacing * (size - 1) / 2)
    ref = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    ref.SetSpacing(tuple(float(v) for v in spacing))
    ref.SetDirection(tuple(float(v) for v in direction.ravel()))
    ref.SetOrigin(tuple(float(v) for v in origin))
    return ref


def to_canonical(image: Image, reference: sitk.Image, *, transform: sitk.Transform | None = None,
                 label: bool = False, percentiles: Sequence[float] = (0.5, 99.5)) -> np.ndarray:
    """Resample ``image`` onto ``reference`` (through ``transform``: reference points -> image points).

    Intensities are normalised to [0, 1] first (linear interpolation, 0 outside); labels use nearest neighbour.
    Returns the array ((Z,) Y, X).
    """
    dims = reference.GetDimension()
    if label:
        src = _sitk(image, np.asarray(image.voxels).astype(np.int16))
        interp, out_type = sitk.sitkNearestNeighbor, sitk.sitkInt16
    else:
        src = _sitk(image, normalise(image.voxels, percentiles))
        interp, out_type = sitk.sitkLinear, sitk.sitkFloat32
    tx = transform if transform is not None else sitk.Transform(dims, sitk.sitkIdentity)
    out = sitk.Resample(src, reference, tx, interp, 0.0, out_type)
    arr = sitk.GetArrayFromImage(out)
    return arr.astype(np.int16 if label else np.float32)


def centre_translation(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """Translation mapping the fixed image's centre onto the moving image's centre (``--init geometry``)."""
    offset = image_centre(moving) - image_centre(fixed)
    return sitk.TranslationTransform(fixed.GetDimension(), tuple(float(v) for v in offset))


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

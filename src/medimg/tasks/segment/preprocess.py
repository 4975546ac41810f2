"""Preprocessing of cases as a plan says, and an on-disk cache of the results.

The cache folder is ``<root_dir>/<key>/``, where the key hashes the dataset root, the dataset options, the plan
fields that change preprocessing (dims, target spacing, normalisation, label values) and the medimg version; a
change to any of them starts a new folder. Each case is three files: ``<case>_image.npy`` (C, *spatial float32),
``<case>_label.npy`` (*spatial uint8 class ids) and ``<case>.json`` (properties). Files are written under a
temporary name and renamed, so a crash never leaves a half-written case behind. The default ``root_dir`` is
``$MEDIMG_CACHE`` or ``~/.cache/medimg/preprocessed``.

Cascade with classical methods (``SegmentPlan.cascade``): after normalisation, :func:`preprocess_case` appends a
classical result of the first channel, computed on the image resampled to the plan's spacing (before
normalisation, in image units), as extra channels: ``"fcm"`` adds the 3 memberships (darkest cluster first, sum
1) of :func:`medimg.classical.fuzzy_c_means` with ``seed=plan.seed``; ``"otsu"`` adds the 0/1 mask of
:func:`medimg.classical.otsu`. A constant first channel gives memberships of 1/3 and an all-zero mask. The
image array then has ``plan.network_in_channels`` channels. :func:`preprocess_image` goes through the same code,
so prediction gets the same channels. The cache key includes the cascade (and, for ``"fcm"``, the seed) only when
it is not ``"none"``, so the keys of plans without a cascade are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.io.files import atomic_output
from medimg.tasks.segment.data import SegDataset
from medimg.tasks.segment.plan import CASCADE_CHANNELS, SegmentPlan

logger = logging.getLogger(__name__)

__all__ = ["preprocess_case", "PreprocessedCache", "default_cache_dir", "cache_key"]

_CACHE_FORMAT = 1
_LOCATIONS_PER_CLASS = 1000


def default_cache_dir() -> Path:
    """``$MEDIMG_CACHE`` or ``~/.cache/medimg/preprocessed``."""
    env = os.environ.get("MEDIMG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medimg" / "preprocessed"


def _normalise(vox: np.ndarray, plan: SegmentPlan) -> np.ndarray:
    out = np.empty(vox.shape, np.float32)
    for c, spec in enumerate(plan.normalization):
        ch = vox[c].astype(np.float32)
        if spec.scheme == "ct":
            lo, hi = spec.clip if spec.clip is not None else (-np.inf, np.inf)
            ch = (np.clip(ch, lo, hi) - np.float32(spec.mean)) / np.float32(spec.std)
        elif spec.scheme == "zscore":
            mean, std = float(ch.mean()), float(ch.std())
            ch = (ch - mean) / std if std > 0 else np.zeros_like(ch)
        elif spec.scheme == "rgb":
            ch = ch / np.float32(255.0)
        out[c] = ch
    return out


def _same_spacing(a: tuple[float, ...], b: tuple[float, ...], dims: int) -> bool:
    n = 2 if dims == 2 else 3
    return all(abs(x - y) <= 1e-3 * max(abs(y), 1e-6) for x, y in zip(a[:n], b[:n]))


def resample_to_plan(image: Image, label: Image | None, plan: SegmentPlan) -> tuple[Image, Image | None]:
    """The image (linear) and label (nearest) on the plan's spacing; unchanged when it already matches."""
    from medimg.preprocess import resample

    target = plan.target_spacing
    if _same_spacing(image.spacing, target, plan.dims):
        return image, label
    image = resample(image, spacing_mm=target, interpolation="linear")
    if label is not None:
        label = resample(label.replace(kind=Kind.LABEL), spacing_mm=target, interpolation="nearest")
    return image, label


def _cascade_channels(image: Image, plan: SegmentPlan) -> np.ndarray | None:
    """The extra channels of ``plan.cascade`` (E, Z, Y, X) float32 from the first channel of ``image``, or None."""
    if plan.cascade == "none":
        return None
    from medimg.classical import fuzzy_c_means, otsu

    first = image.replace(voxels=np.asarray(image.voxels)[:1], kind=Kind.INTENSITY)
    vox = np.asarray(first.voxels)
    constant = vox.size == 0 or float(vox.min()) == float(vox.max())
    if plan.cascade == "otsu":
        if constant:
            return np.zeros(vox.shape, np.float32)
        return np.asarray(otsu(first).voxels, dtype=np.float32)
    k = CASCADE_CHANNELS["fcm"]
    uniform = np.full((k,) + vox.shape[1:], 1.0 / k, np.float32)  # too few distinct values: no information
    if constant:
        return uniform
    try:
        return np.asarray(fuzzy_c_means(first, n_clusters=k, seed=plan.seed).memberships.voxels, dtype=np.float32)
    except InvalidParameterError:
        if np.unique(vox).size >= k:
            raise
        return uniform


def preprocess_image(image: Image, plan: SegmentPlan) -> tuple[np.ndarray, Image]:
    """Inference-time preprocessing: (normalised array (C, *spatial) float32, the image on the plan's grid).

    C is ``plan.network_in_channels``: the image's channels plus those of ``plan.cascade``.

    The second value carries the grid (geometry and shape) that predictions made on the array lie on.
    """
    grid, _ = resample_to_plan(image, None, plan)
    arr, _, _ = preprocess_case(grid, None, plan)  # already on the plan's spacing: no second resampling
    return arr, grid


def preprocess_case(image: Image, label: Image | None, plan: SegmentPlan) -> tuple[np.ndarray, np.ndarray | None,
                                                                             dict[str, Any]]:
    """Resample a case to the plan's spacing, normalise it, add the cascade channels, turn label values into ids.

    Resampling uses :func:`medimg.preprocess.resample`: linear for the image, nearest for the label (no resampling
    when the spacing already matches within 0.1 %). ``plan.cascade`` other than "none" appends classical results
    of the first (resampled, not normalised) channel after the normalised channels (see the module docstring).

    Args:
        image: (C, Z, Y, X) intensity image with ``plan.in_channels`` channels.
        label: label map on the image grid, or None (inference).
        plan: the plan.

    Returns:
        ``(image_arr, label_arr, props)``: image (C, Z, Y, X) or, for 2D plans, (C, Y, X) float32 with
        C = ``plan.network_in_channels`` (``plan.in_channels`` + the cascade's channels); label with
        the same spatial axes, uint8 class ids (index into ``plan.label_values``), or None; props with the
        original spacing/shape/origin/direction, the new shape and up to 1000 sampled voxel positions per
        foreground class (``class_locations``) for foreground oversampling.

    Raises:
        InvalidParameterError: wrong channel count, a 3D image for a 2D plan, label values the plan does not
            know.
    """
    if image.n_channels != plan.in_channels:
        raise InvalidParameterError("wrong number of image channels", parameter="image",
                                    expected=f"{plan.in_channels} channels (plan)", found=image.n_channels,
                                    fix="give the channels the plan was made for")
    if plan.dims == 2 and not image.is_2d:
        raise InvalidParameterError("a 2D plan needs 2D images", parameter="image", expected="Z == 1",
                                    found=image.spatial_shape, fix="use a 3D plan for volumes")
    case = str(image.metadata.get("case_id", ""))
    props: dict[str, Any] = {
        "case_id": case, "original_spacing": list(image.spacing), "original_shape": list(image.spatial_shape),
        "origin": list(image.geometry.origin), "direction": [list(r) for r in image.geometry.direction_matrix],
        "target_spacing": list(plan.target_spacing),
    }
    image, label = resample_to_plan(image, label, plan)
    props["resampled_spacing"] = list(image.spacing)
    props["shape"] = list(image.spatial_shape)
    img = _normalise(np.asarray(image.voxels), plan)
    extra = _cascade_channels(image, plan)
    if extra is not None:
        img = np.concatenate([img, extra], axis=0)
    lab_arr = None
    if label is not None:
        lab = np.asarray(label.voxels[0])
        lut_values = np.asarray(plan.label_values)
        values = np.unique(lab)
        unknown = sorted(int(v) for v in values if v not in lut_values)
        if unknown:
            raise InvalidParameterError("label values the plan does not know", parameter="label",
                                        expected=f"values in {list(plan.label_values)}",
                                        found=f"{unknown} in case '{case}'",
                                        fix="fix the label map, or re-plan with these values (verify_dataset)")
        ids = np.zeros(lab.shape, np.uint8)
        for i, v in enumerate(plan.label_values):
            if i:
                ids[lab == v] = i
        lab_arr = ids
        rng = np.random.default_rng(plan.seed)
        locations: dict[str, list[list[int]]] = {}
        for i in range(1, plan.n_classes):
            where = np.argwhere(ids == i)
            if len(where) > _LOCATIONS_PER_CLASS:
                where = where[rng.choice(len(where), _LOCATIONS_PER_CLASS, replace=False)]
            locations[str(i)] = (where[:, 1:] if plan.dims == 2 else where).tolist()
        props["class_locations"] = locations
    if plan.dims == 2:
        img = img[:, 0]
        lab_arr = None if lab_arr is None else lab_arr[0]
    return np.ascontiguousarray(img), lab_arr, props


def cache_key(plan: SegmentPlan, dataset: SegDataset) -> str:
    """The hash naming the cache folder of (dataset, preprocessing fields of the plan, medimg version).

    ``cascade`` (with ``seed`` for "fcm", whose memberships depend on it) enters the hash only when it is not
    "none", so plans without a cascade keep the key they had before the option existed.
    """
    from medimg import __version__

    payload = {
        "format": _CACHE_FORMAT, "medimg": __version__, "root": str(Path(dataset.root).resolve()),
        "layout": dataset.layout, "foreground_only": dataset.foreground_only, "dims": plan.dims,
        "target_spacing": list(plan.target_spacing), "label_values": list(plan.label_values),
        "normalization": [json.loads(json.dumps(n.__dict__, default=list)) for n in plan.normalization],
        "in_channels": plan.in_channels,
    }
    if plan.cascade != "none":
        payload["cascade"] = plan.cascade
        if plan.cascade == "fcm":
            payload["cascade_seed"] = plan.seed
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _safe(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id)


class PreprocessedCache:
    """Preprocessed cases on disk, built on first use.

    Args:
        root_dir: parent folder of the cache (None: :func:`default_cache_dir`).
        plan: the plan whose preprocessing is cached.
        dataset: the dataset the cases come from.

    Example:
        >>> cache = PreprocessedCache(None, plan, ds)        # doctest: +SKIP
        >>> image, label, props = cache.get(ds.cases[0])      # doctest: +SKIP
    """

    def __init__(self, root_dir: str | os.PathLike[str] | None, plan: SegmentPlan, dataset: SegDataset) -> None:
        self.plan = plan
        self.dataset = dataset
        self.key = cache_key(plan, dataset)
        self.dir = Path(root_dir).expanduser() if root_dir is not None else default_cache_dir()
        self.dir = self.dir / self.key

    def _paths(self, case_id: str) -> tuple[Path, Path, Path]:
        s = _safe(case_id)
        return self.dir / f"{s}_image.npy", self.dir / f"{s}_label.npy", self.dir / f"{s}.json"

    def has(self, case_id: str) -> bool:
        return all(p.is_file() for p in self._paths(case_id))

    def _write(self, case_id: str) -> None:
        image, label = self.dataset.load(case_id)
        img, lab, props = preprocess_case(image.with_metadata(case_id=case_id), label, self.plan)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "cache.json"
        if not manifest.is_file():
            with atomic_output(manifest) as tmp:
                tmp.write_text(json.dumps({"key": self.key, "dataset": str(self.dataset.root),
                                           "plan": self.plan.to_dict()}, indent=1), encoding="utf-8")
        p_img, p_lab, p_props = self._paths(case_id)
        for path, arr in ((p_img, img), (p_lab, lab)):
            with atomic_output(path) as tmp:  # the temporary name keeps ".npy": np.save adds nothing
                np.save(tmp, arr)
        with atomic_output(p_props) as tmp:  # written last: its presence marks a complete case
            tmp.write_text(json.dumps(props), encoding="utf-8")

    def get(self, case_id: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(image (C, *spatial) float32, label (*spatial) uint8, props) of a case, memory-mapped, built if needed."""
        if case_id not in self.dataset.cases:
            raise InvalidParameterError("unknown case id", parameter="case_id",
                                        expected=f"one of {len(self.dataset.cases)} cases", found=repr(case_id),
                                        fix="take ids from dataset.cases")
        if not self.has(case_id):
            self._write(case_id)
        p_img, p_lab, p_props = self._paths(case_id)
        props = json.loads(p_props.read_text(encoding="utf-8"))
        return np.load(p_img, mmap_mode="r"), np.load(p_lab, mmap_mode="r"), props

    def build(self, case_ids: Iterable[str] | None = None, *,
              progress: Callable[[int, int, str], None] | None = None) -> list[str]:
        """Preprocess the cases not cached yet (all cases by default); returns the ids built.

        ``progress(done, total, case_id)`` is called after each case.
        """
        ids = list(self.dataset.cases if case_ids is None else case_ids)
        built = []
        for n, case in enumerate(ids, 1):
            if not self.has(case):
                self._write(case)
                built.append(case)
            if progress is not None:
                progress(n, len(ids), case)
        logger.info("cache %s: %d built, %d already there", self.dir, len(built), len(ids) - len(built))
        return built

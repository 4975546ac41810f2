"""Dataset fingerprint: what a planner needs to know about a dataset (spacings, shapes, intensities, labels).

Spacings and shapes come from file headers where the format allows it (every case); intensity statistics and
label frequencies come from the voxels of the sampled cases: like nnU-Net, up to 10,000 foreground voxels
(label > 0) are drawn per case and the statistics are taken over the pooled sample.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.core.image import to_jsonable

logger = logging.getLogger(__name__)

__all__ = ["Fingerprint", "compute_fingerprint", "channel_modality"]

_SAMPLES_PER_CASE = 10_000
_MR_WORDS = ("mr", "mri", "t1", "t2", "flair", "adc", "dwi", "pd", "t1ce", "t1c", "t1gd", "swi", "bold")
_RGB_WORDS = ("rgb", "r", "g", "b", "red", "green", "blue", "colour", "color")


def channel_modality(name: str, *, dims: int = 3, n_channels: int = 1) -> str:
    """Map a dataset.json channel name to "ct", "mr", "rgb" or "other".

    Example:
        >>> [channel_modality(n) for n in ("CT", "T2w", "MRI", "R", "US")]
        ['ct', 'mr', 'mr', 'rgb', 'other']
    """
    low = name.strip().lower()
    if low in ("ct", "cta", "cect", "nect") or low.startswith("ct "):
        return "ct"
    token = low.replace("-", " ").replace("_", " ").split()
    if low in _RGB_WORDS or (dims == 2 and n_channels == 3 and low in ("r", "g", "b")):
        return "rgb"
    if any(t in _MR_WORDS or t.rstrip("w") in _MR_WORDS or t.startswith("mr") for t in token):
        return "mr"
    return "other"


@dataclass(frozen=True)
class Fingerprint:
    """What a dataset looks like.

    Attributes:
        n_cases: cases in the dataset; n_sampled: cases whose voxels were read.
        dims: 2 or 3.
        spacings: per case (sx, sy, sz) mm, x first.
        shapes: per case (Z, Y, X) (Z = 1 for 2D).
        median_spacing: (sx, sy, sz); median_shape: (Z, Y, X).
        channel_names, modalities: per channel; modality is "ct", "mr", "rgb" or "other".
        intensity: per channel foreground statistics {mean, std, median, min, max, p00_5, p99_5, n}.
        label_values, class_names: index = class id.
        label_frequencies: voxel fraction per class, same order as label_values.
        name: dataset name; root: its folder; seconds: time taken.
    """

    n_cases: int
    dims: int
    spacings: tuple[tuple[float, float, float], ...]
    shapes: tuple[tuple[int, int, int], ...]
    median_spacing: tuple[float, float, float]
    median_shape: tuple[int, int, int]
    channel_names: tuple[str, ...]
    modalities: tuple[str, ...]
    intensity: tuple[dict[str, float], ...]
    label_values: tuple[int, ...]
    class_names: tuple[str, ...]
    label_frequencies: tuple[float, ...]
    n_sampled: int = 0
    name: str = ""
    root: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: to_jsonable(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        try:
            return cls(
                n_cases=int(data["n_cases"]), dims=int(data["dims"]),
                spacings=tuple(tuple(float(v) for v in s) for s in data["spacings"]),  # type: ignore[misc]
                shapes=tuple(tuple(int(v) for v in s) for s in data["shapes"]),  # type: ignore[misc]
                median_spacing=tuple(float(v) for v in data["median_spacing"]),  # type: ignore[arg-type]
                median_shape=tuple(int(v) for v in data["median_shape"]),  # type: ignore[arg-type]
                channel_names=tuple(data["channel_names"]), modalities=tuple(data["modalities"]),
                intensity=tuple(dict(i) for i in data["intensity"]),
                label_values=tuple(int(v) for v in data["label_values"]),
                class_names=tuple(data["class_names"]),
                label_frequencies=tuple(float(v) for v in data["label_frequencies"]),
                n_sampled=int(data.get("n_sampled", 0)), name=str(data.get("name", "")),
                root=str(data.get("root", "")), seconds=float(data.get("seconds", 0.0)),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError("invalid fingerprint data", parameter="data",
                                        expected="the output of Fingerprint.to_dict", found=repr(exc),
                                        fix="recompute the fingerprint") from exc

    def summary(self) -> dict[str, Any]:
        """A small JSON-ready summary (what a plan keeps)."""
        return {
            "name": self.name, "n_cases": self.n_cases, "n_sampled": self.n_sampled, "dims": self.dims,
            "median_spacing": list(self.median_spacing), "median_shape": list(self.median_shape),
            "modalities": list(self.modalities), "intensity": [dict(i) for i in self.intensity],
            "label_frequencies": dict(zip([str(v) for v in self.label_values], self.label_frequencies)),
        }


def _stats(sample: np.ndarray) -> dict[str, float]:
    if sample.size == 0:
        return {"mean": 0.0, "std": 1.0, "median": 0.0, "min": 0.0, "max": 0.0, "p00_5": 0.0, "p99_5": 0.0, "n": 0}
    p = np.percentile(sample, [0.5, 50.0, 99.5])
    return {"mean": float(sample.mean()), "std": float(sample.std()), "median": float(p[1]),
            "min": float(sample.min()), "max": float(sample.max()), "p00_5": float(p[0]), "p99_5": float(p[2]),
            "n": int(sample.size)}


def compute_fingerprint(ds: Any, *, max_cases: int | None = None, seed: int = 0) -> Fingerprint:
    """Fingerprint a dataset.

    Args:
        ds: the dataset (a :class:`medimg.tasks.segment.data.SegDataset`: ``cases``, ``dims``, ``n_channels``,
            ``load``, ...).
        max_cases: read the voxels of at most this many cases (drawn with ``seed``); spacings and shapes
            still cover every case (from headers). None: all cases.
        seed: seed of the case and voxel sampling.

    Raises:
        ImageReadError, GeometryMismatchError: a case that cannot be read (run verify_dataset first).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    spacings, shapes = [], []
    for case in ds.cases:
        sp, sh = ds.header(case)
        spacings.append(tuple(float(v) for v in sp))
        shapes.append(tuple(int(v) for v in sh))
    if max_cases is None or max_cases >= len(ds.cases):
        sampled = list(ds.cases)
    else:
        idx = np.sort(rng.choice(len(ds.cases), size=max(1, int(max_cases)), replace=False))
        sampled = [ds.cases[i] for i in idx]
    n_ch = len(ds.channel_names)
    fg_samples: list[list[np.ndarray]] = [[] for _ in range(n_ch)]
    all_samples: list[list[np.ndarray]] = [[] for _ in range(n_ch)]
    label_values = list(ds.label_values)
    counts = np.zeros(len(label_values), np.int64)
    lut = {v: i for i, v in enumerate(label_values)}
    for case in sampled:
        image, label = ds.load(case)
        lab = label.voxels[0]
        values, n = np.unique(lab, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            if v in lut:
                counts[lut[v]] += c
        fg = lab > 0
        n_fg = int(np.count_nonzero(fg))
        for c in range(min(n_ch, image.n_channels)):
            ch = image.voxels[c]
            if n_fg:
                vals = ch[fg]
                if vals.size > _SAMPLES_PER_CASE:
                    vals = rng.choice(vals, _SAMPLES_PER_CASE, replace=False)
                fg_samples[c].append(vals.astype(np.float64))
            flat = ch.reshape(-1)
            take = rng.integers(0, flat.size, size=min(flat.size, _SAMPLES_PER_CASE // 4))
            all_samples[c].append(flat[take].astype(np.float64))
    intensity = []
    for c in range(n_ch):
        pool = fg_samples[c] or all_samples[c]
        intensity.append(_stats(np.concatenate(pool) if pool else np.zeros(0)))
    total = counts.sum()
    freqs = tuple(float(c / total) if total else 0.0 for c in counts)
    sp_arr = np.asarray(spacings, float)
    sh_arr = np.asarray(shapes, float)
    modalities = tuple(channel_modality(n, dims=ds.dims, n_channels=n_ch) for n in ds.channel_names)
    fp = Fingerprint(
        n_cases=len(ds.cases), dims=ds.dims, spacings=tuple(spacings), shapes=tuple(shapes),  # type: ignore[arg-type]
        median_spacing=tuple(float(v) for v in np.median(sp_arr, axis=0)),  # type: ignore[arg-type]
        median_shape=tuple(int(round(v)) for v in np.median(sh_arr, axis=0)),  # type: ignore[arg-type]
        channel_names=tuple(ds.channel_names), modalities=modalities, intensity=tuple(intensity),
        label_values=tuple(label_values), class_names=tuple(ds.class_names), label_frequencies=freqs,
        n_sampled=len(sampled), name=ds.name, root=str(ds.root), seconds=time.perf_counter() - t0,
        extra={"layout": ds.layout, "foreground_only": ds.foreground_only, "seed": seed},
    )
    logger.info("fingerprint of %s: %d cases (%d sampled) in %.2f s", ds.root, fp.n_cases, fp.n_sampled, fp.seconds)
    return fp

"""What an analysis pipeline returns, the registry the pipelines add themselves to, and the image features their
applies rules read (the choice among them is :mod:`medimg.pipelines.choose`).

Each pipeline declares what it can handle with an *applies rule*: ``applies(image) -> Applicability`` (a
confidence in [0, 1], the reason in words, and whether the input lies inside what the pipeline was validated
on). :func:`choose_pipeline` asks every rule and takes the most confident validated one at or above
:data:`CHOICE_THRESHOLD`; when none applies it refuses with one line that says what the image looks like.
A pipeline forced by the user on an input outside its validation runs, with a warning in its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from medimg.core.image import Image

__all__ = ["AnalysisResult", "Applicability", "PIPELINES", "APPLIES", "CHOICE_THRESHOLD", "register",
           "register_applies", "raster_features", "describe_image", "validation_warning"]

#: The least confidence at which the automatic choice takes a pipeline.
CHOICE_THRESHOLD = 0.5


@dataclass
class AnalysisResult:
    """Everything a pipeline produced, ready to be written by ``medimg analyze``.

    Attributes:
        pipeline: registered name.
        title: one line for the report heading.
        method: what was done, in words, for the report.
        parameters: the parameters used (JSON-friendly).
        masks: name -> label Image (written to OUT/masks/<name>.nii.gz, or .png for 2D).
        label_names: name -> {label value: structure name} for each mask.
        measurements: one record per structure or instance (snake_case keys, units in the name).
        summary: headline numbers (e.g. lung_volume_ml, count) for the report and JSON.
        figures: caption -> (H, W, 3) uint8 overlay figure.
        notes: caveats the user must read (fallback spacing, heuristics that fired).
        warnings: what makes the result doubtful, shown prominently (e.g. an input outside what the pipeline was
            validated on); also printed on stderr by the CLI.
    """

    pipeline: str
    title: str
    method: str
    parameters: dict[str, Any]
    masks: dict[str, Image]
    label_names: dict[str, dict[int, str]]
    measurements: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Applicability:
    """How well a pipeline fits an input.

    Attributes:
        confidence: 0 (certainly not) to 1 (certainly); the automatic choice needs :data:`CHOICE_THRESHOLD`.
        reason: what the rule saw, in words ("grey frame with a black ultrasound sector").
        validated: the input lies inside what the pipeline was validated on (BENCHMARKS.md); a pipeline run on
            an input with ``validated=False`` carries a warning.
    """

    confidence: float
    reason: str
    validated: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "confidence", float(min(max(self.confidence, 0.0), 1.0)))

    @property
    def applies(self) -> bool:
        """Confident enough and validated: the automatic choice may take it."""
        return self.validated and self.confidence >= CHOICE_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": round(self.confidence, 3), "reason": self.reason, "validated": self.validated}


PipelineFn = Callable[[Image], AnalysisResult]
AppliesFn = Callable[[Image], Applicability]
#: name -> (function, one-line description)
PIPELINES: dict[str, tuple[PipelineFn, str]] = {}
#: name -> applies rule
APPLIES: dict[str, AppliesFn] = {}


def register(name: str, description: str, *, applies: AppliesFn | None = None) -> Callable[[PipelineFn], PipelineFn]:
    """Decorator adding a pipeline to :data:`PIPELINES`, with its applies rule when given (else see
    :func:`register_applies`). A pipeline without a rule is never chosen automatically."""

    def deco(fn: PipelineFn) -> PipelineFn:
        PIPELINES[name] = (fn, description)
        if applies is not None:
            APPLIES[name] = applies
        return fn

    return deco


def register_applies(name: str) -> Callable[[AppliesFn], AppliesFn]:
    """Decorator registering ``applies(image) -> Applicability`` as the rule of pipeline ``name``."""

    def deco(fn: AppliesFn) -> AppliesFn:
        APPLIES[name] = fn
        return fn

    return deco


# ------------------------------------------------------------------------------------------ image features
def _grey2d(image: Image) -> np.ndarray:
    v = image.voxels[:, 0].astype(np.float32)
    if v.shape[0] >= 3:
        return 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]
    return v[0]


def raster_features(image: Image) -> dict[str, Any]:
    """Content features of a 2D image that the applies rules share (all relative to the image's own range).

    Keys: ``colour`` (RGB whose channels differ by more than 1 grey level on average), ``dominant_channel_share``
    (the brightest channel's share of the foreground colour; 1/3 for neutral colours, 1 for one pure channel),
    ``background_level`` (median of the grey image scaled so that its minimum is 0 and its 99.5th percentile 1),
    ``background_spread`` (standard deviation of the darker half on that scale: flat dark backgrounds are
    near 0), ``black_border`` (share of the border pixels at the minimum, within 2/255 of the range),
    ``black_fraction`` (share of all pixels there), ``sector_solidity`` (solidity of the largest non-black
    region, holes filled: a convex ultrasound fan is near 1) and ``sector_share`` (that region's share of the
    image).
    """
    from scipy import ndimage

    v = image.voxels[:, 0]
    grey = _grey2d(image)
    step = max(1, int(np.ceil(max(grey.shape) / 512)))
    grey = grey[::step, ::step]
    lo, hi = float(grey.min()), float(np.percentile(grey, 99.5))
    rng = hi - lo
    feats: dict[str, Any] = {"channels": int(image.n_channels), "colour": False, "dominant_channel_share": 1 / 3}
    if rng <= 0:
        feats.update(background_level=0.0, background_spread=0.0, black_border=1.0, black_fraction=1.0,
                     sector_solidity=0.0, sector_share=0.0, sector_level=0.0, sector_speckle=0.0,
                     sector_apex_width=1.0, constant=True)
        return feats
    g = (grey - lo) / rng
    if image.n_channels >= 3:
        rgb = v[:3, ::step, ::step].astype(np.float32)
        diff = float(np.abs(rgb[0] - rgb[1]).mean() + np.abs(rgb[1] - rgb[2]).mean())
        scale = 255.0 / max(float(rgb.max()), 1.0) if image.voxels.dtype != np.uint8 else 1.0
        feats["colour"] = diff * scale > 1.0
        fg = g > np.median(g)
        means = rgb[:, fg].mean(axis=1) if fg.any() else rgb.reshape(3, -1).mean(axis=1)
        feats["dominant_channel_share"] = float(means.max() / max(float(means.sum()), 1e-6))
    black_tol = (2.0 / 255.0) * (255.0 / rng if image.voxels.dtype == np.uint8 else 1.0)
    black = g <= black_tol
    border = np.concatenate([black[0], black[-1], black[:, 0], black[:, -1]])
    low = g[g <= np.median(g)]
    feats.update(background_level=float(np.median(g)), background_spread=float(low.std()),
                 black_border=float(border.mean()), black_fraction=float(black.mean()), constant=False)
    solidity, share, level, speckle, apex = 0.0, 0.0, 0.0, 0.0, 1.0
    lab, n = ndimage.label(ndimage.binary_opening(~black, iterations=2))
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        region = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)) + 1)
        share = float(region.mean())
        if region.sum() >= 16:
            from skimage.morphology import convex_hull_image

            solidity = float(region.sum() / max(int(convex_hull_image(region).sum()), 1))
            level = float(np.median(g[region]))
            inner = ndimage.binary_erosion(region, iterations=2)
            if inner.any():
                speckle = float(np.median(np.abs(g - ndimage.uniform_filter(g, 3))[inner]))
            rows = np.nonzero(region.any(axis=1))[0]
            widths = region[rows].sum(axis=1)
            top = widths[: max(1, len(widths) // 10)]
            apex = float(top.mean() / max(float(widths.max()), 1.0))
    feats.update(sector_solidity=solidity, sector_share=share, sector_level=level, sector_speckle=speckle,
                 sector_apex_width=apex)
    return feats


def describe_image(image: Image) -> str:
    """What an image looks like, in a few words, for messages (e.g. "a grey 2D image with a bright background")."""
    modality = str(image.metadata.get("modality") or "").upper()
    mod = f"{modality} " if modality not in ("", "UNKNOWN", "OT") else ""
    if not image.is_2d:
        lo, hi = float(image.voxels.min()), float(image.voxels.max())
        return (f"a {mod}3D image of {image.n_channels} channel(s), (Z, Y, X) {tuple(image.spatial_shape)}, "
                f"values {lo:.4g}..{hi:.4g}")
    f = raster_features(image)
    kind = "colour" if f["colour"] else "grey"
    if f.get("constant"):
        return f"a constant {kind} {mod}2D image"
    if f["background_level"] >= (0.45 if f["colour"] else 0.7):
        bg = "a bright background (bright-field or stained microscopy, a photograph?)"
    elif f["background_level"] <= 0.15 and f["background_spread"] <= 0.05:
        bg = "a dark, flat background"
    else:
        bg = "a mid-grey textured background and no black ultrasound sector" if f["black_border"] < 0.9 else \
            "a black surround"
    return f"a {kind} {mod}2D image with {bg}"


# ------------------------------------------------------------------------------------------ the choice
def validation_warning(name: str, a: Applicability) -> str | None:
    """The warning for pipeline ``name`` run by the user's choice on an input its rule does not accept."""
    if a.applies:
        return None
    return (f"the {name} pipeline was forced on an input outside what it was validated on ({a.reason}; "
            f"applies confidence {a.confidence:.2f}): its results may be meaningless")

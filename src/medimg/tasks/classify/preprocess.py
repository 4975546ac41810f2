"""The one deterministic preprocessing that classification training and prediction share, and its inverse.

:func:`preprocess_sample` turns one sample (as :meth:`ClassificationDataset.load` gives it) into the network input
the plan describes: channels matched, normalised, resized or cropped/padded. :func:`map_to_input` maps a map on the
network's input grid (a saliency map) back onto the sample's own grid.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError, MedimgError, bad_value
from medimg.core.image import Image
from medimg.tasks.classify.plan import ClassifyPlan

logger = logging.getLogger(__name__)

__all__ = ["preprocess_sample", "preprocess_samples", "prepare_input", "map_to_input"]


def _match_channels(arr: np.ndarray, want: int) -> np.ndarray:
    c = arr.shape[0]
    if c == want:
        return arr
    if c in (2, 4):  # grey + alpha, RGBA
        arr, c = arr[:-1], c - 1
        if c == want:
            return arr
    if c == 1 and want == 3:
        return np.repeat(arr, 3, axis=0)
    if c == 3 and want == 1:
        if np.array_equal(arr[0], arr[1]) and np.array_equal(arr[0], arr[2]):
            return arr[:1]
        weights = np.array([0.299, 0.587, 0.114], np.float32).reshape(3, *([1] * (arr.ndim - 1)))
        return (arr * weights).sum(axis=0, keepdims=True)  # ITU-R BT.601 luma
    raise bad_value("array", "channel count does not match the plan", f"{want} channels (or grey/RGB to convert)",
                    f"{c} channels", "give images with the channels the model was planned for")


def _normalise(arr: np.ndarray, plan: ClassifyPlan) -> np.ndarray:
    out = np.empty(arr.shape, np.float32)
    for c in range(arr.shape[0]):
        x = arr[c].astype(np.float32, copy=False)
        if plan.normalization == "zscore":
            std = float(x.std())
            out[c] = (x - float(x.mean())) / std if std > 1e-8 else 0.0
        elif plan.normalization == "minmax":
            lo, hi = float(x.min()), float(x.max())
            out[c] = (x - lo) / (hi - lo) if hi > lo else 0.0
        elif plan.normalization == "percentile":
            lo, hi = (float(v) for v in np.percentile(x, plan.percentiles))
            out[c] = (np.clip(x, lo, hi) - lo) / (hi - lo) if hi > lo else 0.0
        else:  # rgb
            assert plan.channel_mean is not None and plan.channel_std is not None
            out[c] = (x / 255.0 - plan.channel_mean[c]) / plan.channel_std[c]
    return out


def _crop_pad(arr: np.ndarray, size: Sequence[int]) -> np.ndarray:
    out = np.empty((arr.shape[0], *size), np.float32)
    out[...] = arr.reshape(arr.shape[0], -1).min(axis=1).reshape(-1, *([1] * len(size)))
    src, dst = [slice(None)], [slice(None)]
    for have, want in zip(arr.shape[1:], size):
        if have >= want:
            start = (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(None))
        else:
            start = (want - have) // 2
            src.append(slice(None))
            dst.append(slice(start, start + have))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _resize(arr: np.ndarray, size: Sequence[int]) -> np.ndarray:
    if tuple(arr.shape[1:]) == tuple(size):
        return arr
    from skimage.transform import resize

    out = resize(arr, (arr.shape[0], *size), order=1, mode="edge", anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32, copy=False)


def preprocess_sample(array: np.ndarray, plan: ClassifyPlan) -> np.ndarray:
    """The network input of one sample: channels matched, normalised, then resized or cropped/padded.

    Deterministic, used by both training and prediction. Channels: alpha dropped; grey repeated to 3 channels
    for an RGB plan; RGB turned to grey for a grey plan (the first channel when all three are equal, else the
    BT.601 luma). Normalisation uses the statistics of the whole image before the spatial step.

    Args:
        array: one sample as :meth:`ClassificationDataset.load` gives it: (C, Y, X) for 2D plans, (C, Z, Y, X)
            for 3D plans; an array without channel axis ((Y, X) / (Z, Y, X)) is taken as one channel, and
            ``Image.voxels`` of a 2D image, (C, 1, Y, X), is accepted too.
        plan: the plan.

    Returns:
        float32 (in_channels, *input_size), C-contiguous.

    Raises:
        InvalidParameterError: wrong number of axes, a channel count that cannot be converted, NaN/Inf values.

    Example:
        >>> plan = ClassifyPlan(schema_version=1, task="binary", class_names=("a", "b"), dims=2,
        ...                     in_channels=1, input_size=(16, 16))
        >>> x = preprocess_sample(np.arange(32 * 24, dtype=np.float32).reshape(1, 32, 24), plan)
        >>> x.shape, x.dtype, bool(abs(float(x.mean())) < 0.1)
        ((1, 16, 16), dtype('float32'), True)
    """
    arr = np.asarray(array)
    if arr.ndim == plan.dims:
        arr = arr[None]
    elif plan.dims == 2 and arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]  # Image voxels (C, 1, Y, X)
    if arr.ndim != plan.dims + 1 or min(arr.shape) < 1:
        raise bad_value("array", "sample has the wrong number of axes",
                        f"(C, {'Z, Y, X' if plan.dims == 3 else 'Y, X'}) for a {plan.dims}D plan", f"shape {arr.shape}",
                        "give one sample as ClassificationDataset.load returns it")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise bad_value("array", "sample is not numeric", "a numeric array", str(arr.dtype), "convert it to numbers")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise bad_value("array", "sample holds NaN/Inf values", "finite values",
                        f"{int(arr.size - np.count_nonzero(np.isfinite(arr)))} non-finite", "replace them first")
    arr = _normalise(_match_channels(arr, plan.in_channels), plan)
    arr = _resize(arr, plan.input_size) if plan.resize == "resize" else _crop_pad(arr, plan.input_size)
    return np.ascontiguousarray(arr, dtype=np.float32)


def preprocess_samples(ds: Any, positions: Sequence[int], plan: Any, what: str) -> np.ndarray:
    """The samples of a dataset at ``positions`` as one (N, C, *input_size) float32 array (training and validation
    inputs, kept in memory); errors name the sample."""
    out = np.empty((len(positions), plan.in_channels, *plan.input_size), np.float32)
    t0 = time.perf_counter()
    for n, i in enumerate(positions):
        try:
            out[n] = preprocess_sample(ds.load(i), plan)
        except MedimgError as exc:
            raise InvalidParameterError(f"sample '{ds.ids[i]}': {exc.what}", path=exc.path or ds.describe(i),
                                        parameter=exc.parameter, expected=exc.expected, found=exc.found,
                                        fix=exc.fix) from exc
        if (n + 1) % 200 == 0:
            logger.info("%s: preprocessed %d of %d samples", what, n + 1, len(positions))
    logger.info("%s: %d samples preprocessed to %s in %.1f s", what, len(positions), tuple(out.shape[1:]),
                time.perf_counter() - t0)
    return out


def prepare_input(sample: Any, where: str, sid: str, plan: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """(network input (C, *input_size), the sample's spatial shape) of one sample to predict: an Image or an array
    ((C, *spatial) or (*spatial)); errors name the sample (``where``, ``sid``)."""
    dims = int(plan.dims)
    if isinstance(sample, Image):
        if (dims == 2) != sample.is_2d:
            raise InvalidParameterError(
                "wrong dimensionality for the model", path=where, parameter="input", expected=f"a {dims}D image",
                found=f"a {'2D' if sample.is_2d else '3D'} image of shape (Z, Y, X) {sample.spatial_shape}",
                fix="use a model trained on data of this dimensionality")
        arr = np.asarray(sample.voxels)
        arr = arr[:, 0] if dims == 2 else arr
    else:
        arr = np.asarray(sample)
        if arr.ndim not in (dims, dims + 1):
            raise InvalidParameterError(
                "wrong dimensionality for the model", path=where, parameter="input",
                expected=f"({'Y, X' if dims == 2 else 'Z, Y, X'}) or (C, {'Y, X' if dims == 2 else 'Z, Y, X'})",
                found=f"shape {arr.shape}", fix="use a model trained on data of this dimensionality")
        if arr.ndim == dims:
            arr = arr[None]
    try:
        x = preprocess_sample(arr, plan)
    except MedimgError as exc:
        raise InvalidParameterError(f"sample '{sid}': {exc.what}", path=where, parameter=exc.parameter,
                                    expected=exc.expected, found=exc.found, fix=exc.fix) from exc
    return x, tuple(int(s) for s in arr.shape[1:])


def map_to_input(array: np.ndarray, input_shape: Sequence[int], *, resize: str = "resize") -> np.ndarray:
    """Map an array on the network's input grid (``plan.input_size``) back onto the sample's own grid.

    The inverse of the spatial step of :func:`preprocess_sample`: ``"resize"``
    resizes linearly; ``"crop_pad"`` puts the centred crop back (zeros outside it) and cuts the padding away.

    Args:
        array: (Y, X) or (Z, Y, X) map on the input grid.
        input_shape: the sample's spatial shape, same number of axes.
        resize: the plan's ``resize`` policy.

    Returns:
        float32 map of shape ``input_shape``.

    Example:
        >>> map_to_input(np.ones((4, 4)), (8, 6)).shape
        (8, 6)
        >>> float(map_to_input(np.ones((4, 4)), (2, 6), resize="crop_pad").sum())  # padding cut, crop put back
        8.0
    """
    a = np.asarray(array, np.float32)
    shape = tuple(int(s) for s in input_shape)
    if a.ndim != len(shape):
        raise InvalidParameterError("map and input have different numbers of axes", parameter="input_shape",
                                    expected=f"{a.ndim} sizes", found=shape, fix="give the sample's spatial shape")
    if a.shape == shape:
        return a.copy()
    if resize == "resize":
        from skimage.transform import resize as sk_resize

        return sk_resize(a, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)
    out = np.zeros(shape, np.float32)
    src, dst = [], []
    for have, want in zip(shape, a.shape):  # forward: sample (have) -> input grid (want)
        if have >= want:
            start = (have - want) // 2
            dst.append(slice(start, start + want))
            src.append(slice(None))
        else:
            start = (want - have) // 2
            dst.append(slice(None))
            src.append(slice(start, start + have))
    out[tuple(dst)] = a[tuple(src)]
    return out

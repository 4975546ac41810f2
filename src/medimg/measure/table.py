"""One record per label (or per connected instance) with every measure in physical units; CSV/JSON output.

Record keys are snake_case with the unit in the name. Every record has ``label``, ``voxel_count`` and
``centroid_{x,y,z}_mm`` (LPS) and ``bbox_*``; then

* 3D label maps: ``volume_ml``, ``surface_area_mm2``, ``equivalent_sphere_diameter_mm``, ``longest_diameter_mm``
  (3D, between surface points), ``inplane_long_axis_mm`` and ``short_axis_diameter_mm`` (RECIST, in the k-slice
  with the largest cross-section), ``max_cross_section_area_mm2``, ``max_cross_section_slice``;
* 2D label maps (Z = 1): ``area_mm2``, ``perimeter_mm``, ``equivalent_circle_diameter_mm``,
  ``longest_diameter_mm``, ``short_axis_diameter_mm``, ``ellipse_major_axis_mm``, ``ellipse_minor_axis_mm``
  (full axes), ``ellipse_angle_deg``, ``ellipse_circumference_mm``;
* with an intensity image: ``mean_hu``/``std_hu``/``min_hu``/``max_hu``/``p5_hu``/``p25_hu``/``median_hu``/
  ``p75_hu``/``p95_hu`` for CT, ``..._intensity`` otherwise (see :mod:`medimg.measure.intensity`).

Unknown pixel size: a 2D image whose pixel size is unknown (``metadata["spacing_source"] == "default_1mm"``,
PNG/JPEG/TIFF read without a spacing) is measured in pixels: with ``units="auto"`` (the default) the keys end in
``_px`` (lengths, centroids) and ``_px2`` (areas) instead of ``_mm``/``_mm2`` (see :func:`to_pixel_units`).
A 2D image has no volume: 2D records never hold ``volume_ml``.

Empty labels: a label named in ``label_names`` but absent from the map gets a record with ``voxel_count`` 0,
zero volume/area/diameters, and None (JSON null, empty CSV cell) for what is undefined (centroid, box, ellipse,
intensity). Records never contain NaN.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

import medimg.measure.shape as shape
from medimg.core.errors import InvalidParameterError
from medimg.core.geometry import Geometry
from medimg.core.image import Image
from medimg.measure.ellipse import fit_ellipse, perimeter_mm
from medimg.measure.intensity import intensity_stats

__all__ = ["label_array", "measure_mask", "measure_labels", "instance_summary", "to_csv", "to_json",
           "spacing_unknown", "to_pixel_units", "pixel_unit_key", "PIXEL_UNITS_NOTE", "SPACING_FALLBACK_NOTE"]

#: What a result measured in pixels says about its units.
PIXEL_UNITS_NOTE = ("The image carries no pixel size and none was given: lengths are in pixels (keys ending _px), "
                    "areas in square pixels (_px2); give --pixel-spacing MM (or spacing=) for millimetres.")


#: What a command says when a 2D input had no spacing and none was given (once, on stderr, unless -q; and in its
#: JSON notes). Only then: a file whose spacing came from --pixel-spacing or from the file itself gets no warning.
SPACING_FALLBACK_NOTE = ("no pixel spacing in {path}: lengths and areas are in pixels (px, px2), not mm "
                         "(pass --pixel-spacing MM or ROW,COL for millimetres)")


def spacing_unknown(*images: Image | None) -> bool:
    """True when one of the given 2D images has no known pixel size (``spacing_source == "default_1mm"``)."""
    return any(im is not None and im.is_2d and im.metadata.get("spacing_source") == "default_1mm" for im in images)


def pixel_unit_key(key: str) -> str:
    """The pixel-unit name of a measurement key: ``area_mm2`` -> ``area_px2``, ``perimeter_mm`` -> ``perimeter_px``."""
    if key.endswith("_mm2"):
        return key[:-4] + "_px2"
    if key.endswith("_mm"):
        return key[:-3] + "_px"
    return key


def to_pixel_units(value: Any) -> Any:
    """Records or summaries of a 2D image measured at the 1 mm fallback, in pixel units: ``*_mm2`` keys become
    ``*_px2``, ``*_mm`` keys ``*_px``, ``size_unit`` "mm2" becomes "px2" (values are unchanged: 1 mm stood for one
    pixel). Nested dicts and lists are converted too.

    >>> to_pixel_units({"area_mm2": 4.0, "perimeter_mm": 8.0, "size_unit": "mm2", "label": 1})
    {'area_px2': 4.0, 'perimeter_px': 8.0, 'size_unit': 'px2', 'label': 1}
    """
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if k == "size_unit" and v == "mm2":
                v = "px2"
            out[pixel_unit_key(str(k)) if isinstance(k, str) else k] = to_pixel_units(v)
        return out
    if isinstance(value, list):
        return [to_pixel_units(v) for v in value]
    return value


def _pixel_units(units: str, *images: Image | None) -> bool:
    if units not in ("auto", "mm"):
        raise InvalidParameterError("unknown units", parameter="units", expected="auto or mm", found=units,
                                    fix="use units='auto'")
    return units == "auto" and spacing_unknown(*images)


def _where(image: Image) -> dict[str, Any]:
    src = image.metadata.get("source_path")
    return {"path": src} if src else {}


def label_array(labels: Image, *, parameter: str = "labels") -> np.ndarray:
    """The label values of ``labels`` as an int64 (Z, Y, X) array, validated.

    A multi-channel label image whose channels are identical (an RGB-saved mask) uses its first channel.

    Raises:
        InvalidParameterError: channels that differ; non-integer values (a float image with fractions, i.e.
            an intensity or probability image given as labels); negative labels.
    """
    vox = np.asarray(labels.voxels)
    if vox.shape[0] > 1:
        if not all(np.array_equal(vox[0], vox[c]) for c in range(1, vox.shape[0])):
            raise InvalidParameterError(
                "label image has several different channels", parameter=parameter, **_where(labels),
                expected="integer labels in one channel", found=f"{vox.shape[0]} channels",
                fix="save the label map as a single-channel (grayscale or palette) image",
            )
    arr = vox[0]
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        frac = ~finite | (arr != np.round(arr))
        if frac.any():
            example = arr[frac].flat[0]
            raise InvalidParameterError(
                "not a label map: values are not whole numbers", parameter=parameter, **_where(labels),
                expected="integer labels (0 background, 1, 2, ...)", found=f"float values such as {example:.6g}",
                fix="give a segmentation (label) file; threshold a probability map first",
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InvalidParameterError(
            "unsupported label type", parameter=parameter, **_where(labels), expected="integer labels",
            found=str(arr.dtype), fix="convert the label map to an integer type",
        )
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise InvalidParameterError(
            "negative label values", parameter=parameter, **_where(labels), expected="integer labels >= 0",
            found=f"minimum {int(out.min())}", fix="use 0 for background and positive integers for labels",
        )
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _empty_record(is_2d: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {"voxel_count": 0}
    if is_2d:
        rec.update({"area_mm2": 0.0, "perimeter_mm": 0.0, "equivalent_circle_diameter_mm": 0.0,
                    "longest_diameter_mm": 0.0, "short_axis_diameter_mm": 0.0, "ellipse_major_axis_mm": None,
                    "ellipse_minor_axis_mm": None, "ellipse_angle_deg": None, "ellipse_circumference_mm": None})
    else:
        rec.update({"volume_ml": 0.0, "surface_area_mm2": 0.0, "equivalent_sphere_diameter_mm": 0.0,
                    "longest_diameter_mm": 0.0, "inplane_long_axis_mm": 0.0, "short_axis_diameter_mm": 0.0,
                    "max_cross_section_area_mm2": 0.0, "max_cross_section_slice": None})
    rec.update({"centroid_x_mm": None, "centroid_y_mm": None, "centroid_z_mm": None})
    for ax in "xyz":
        rec.update({f"bbox_{ax}_min": None, f"bbox_{ax}_max": None})
    return rec


def measure_mask(mask: np.ndarray, geometry: Geometry, *, is_2d: bool | None = None) -> dict[str, Any]:
    """Every shape measure of one binary mask (Z, Y, X) as a flat record (see the module docstring).

    >>> from medimg.core import Geometry
    >>> m = np.zeros((1, 20, 20), bool); m[0, 5:15, 5:15] = True
    >>> measure_mask(m, Geometry(spacing=(0.5, 0.5, 1.0)))["area_mm2"]
    25.0
    """
    m = shape.as_mask3d(mask)
    flat = m.shape[0] == 1 if is_2d is None else is_2d
    count = int(np.count_nonzero(m))
    if count == 0:
        return _empty_record(flat)
    # work on the bounding box, with a geometry whose origin is the box's first voxel
    sl = ndimage.find_objects(m.astype(np.uint8))[0]
    off_zyx = np.array([s.start for s in sl])
    crop = m[sl]
    g = geometry.replace(origin=tuple(geometry.index_to_physical(off_zyx[::-1])))
    sx, sy, _ = geometry.spacing
    rec: dict[str, Any] = {"voxel_count": count}
    recist = shape.recist_diameters(crop, g)
    if flat:
        area = count * sx * sy
        rec["area_mm2"] = area
        rec["perimeter_mm"] = perimeter_mm(crop[0], (sx, sy))
        rec["equivalent_circle_diameter_mm"] = shape.equivalent_circle_diameter_mm(area)
        rec["longest_diameter_mm"] = recist.long_axis_mm
        rec["short_axis_diameter_mm"] = recist.short_axis_mm
        fit = fit_ellipse(crop[0], (sx, sy))
        rec["ellipse_major_axis_mm"] = fit.major_axis_mm if fit else None
        rec["ellipse_minor_axis_mm"] = fit.minor_axis_mm if fit else None
        rec["ellipse_angle_deg"] = fit.angle_deg if fit else None
        rec["ellipse_circumference_mm"] = fit.circumference_mm if fit else None
    else:
        vol = shape.volume_ml(crop, g)
        rec["volume_ml"] = vol
        rec["surface_area_mm2"] = shape.surface_area_mm2(crop, g)
        rec["equivalent_sphere_diameter_mm"] = shape.equivalent_sphere_diameter_mm(vol)
        rec["longest_diameter_mm"] = shape.longest_diameter_mm(crop, g)
        rec["inplane_long_axis_mm"] = recist.long_axis_mm
        rec["short_axis_diameter_mm"] = recist.short_axis_mm
        rec["max_cross_section_area_mm2"] = recist.cross_section_area_mm2
        rec["max_cross_section_slice"] = int(recist.slice_index + off_zyx[0])
    cx, cy, cz = shape.centroid_mm(crop, g)
    rec.update({"centroid_x_mm": cx, "centroid_y_mm": cy, "centroid_z_mm": cz})
    box = shape.bounding_box(crop) or {}  # never None here: the crop is not empty
    for ax, o in zip("xyz", off_zyx[::-1]):
        rec[f"bbox_{ax}_min"] = int(box[f"bbox_{ax}_min"] + o)
        rec[f"bbox_{ax}_max"] = int(box[f"bbox_{ax}_max"] + o)
    return {k: _clean(v) for k, v in rec.items()}


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components (full connectivity: 8 in 2D, 26 in 3D), largest first."""
    m = shape.as_mask3d(mask)
    structure = np.ones((3, 3, 3), bool)
    if m.shape[0] == 1:
        structure[[0, 2]] = False  # 2D: 8-connected within the slice
    lab, n = ndimage.label(m, structure=structure)
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(-sizes, kind="stable") + 1
    return [lab == i for i in order]


def measure_labels(
    labels: Image,
    *,
    image: Image | None = None,
    label_names: Mapping[int, str] | None = None,
    instances: bool = False,
    units: str = "auto",
) -> list[dict[str, Any]]:
    """Measure every non-zero label of ``labels`` (or every connected instance of each label).

    Args:
        labels: label map (C = 1, integer values; 0 is background). 2D maps (Z = 1) get 2D measures.
        image: optional intensity image on the same grid, for intensity statistics (HU when modality is CT).
        label_names: optional {label: name}; adds a ``name`` field. Labels named here but absent from the map
            get an empty record (see the module docstring).
        instances: split each label into connected components (8-/26-connected), largest first; records get
            an ``instance`` field (1, 2, ...). For maps that already hold one id per instance (e.g. nuclei),
            leave this False: each id is measured as one record.
        units: "auto" (pixel units, ``_px``/``_px2`` keys, when ``labels`` or ``image`` is 2D with no known pixel
            size; else mm) or "mm" (always the ``_mm`` keys, as measured on the geometry's spacing).

    Returns:
        One dict per label (sorted by label) or per instance, JSON-friendly and free of NaN.

    Raises:
        GeometryMismatchError: ``image`` and ``labels`` do not share a voxel grid (names the differing field).
        InvalidParameterError: ``labels`` is not an integer label map (e.g. float values with fractions).

    Example:
        >>> from medimg.testing import label_phantom, phantom
        >>> recs = measure_labels(label_phantom(), image=phantom())
        >>> [r["label"] for r in recs], "mean_hu" in recs[0]
        ([1, 2], True)
    """
    arr = label_array(labels)
    if image is not None:
        labels.check_same_grid(image, what="labels and image")
    names = {int(k): str(v) for k, v in (label_names or {}).items()}
    values, compact = np.unique(arr, return_inverse=True)  # compact ids: large label values cost nothing
    compact = compact.reshape(arr.shape) + (0 if values[0] == 0 else 1)
    present = {int(v): i + (0 if values[0] == 0 else 1) for i, v in enumerate(values) if v != 0}
    wanted = sorted(set(present) | set(names))
    is_2d = labels.is_2d
    records: list[dict[str, Any]] = []
    boxes = ndimage.find_objects(compact) if present else []
    for value in wanted:
        base: dict[str, Any] = {"label": value}
        if names:
            base["name"] = names.get(value, "")
        box = boxes[present[value] - 1] if value in present else None
        if box is None:
            rec = {**base, **({"instance": None} if instances else {}), **_empty_record(is_2d)}
            if image is not None:
                rec.update(intensity_stats(image, np.zeros(arr.shape, bool)))
            records.append(rec)
            continue
        full = np.zeros(arr.shape, bool)
        full[box] = compact[box] == present[value]
        parts = _components(full) if instances else [full]
        for i, part in enumerate(parts, start=1):
            rec = dict(base)
            if instances:
                rec["instance"] = i
            rec.update(measure_mask(part, labels.geometry, is_2d=is_2d))
            if image is not None:
                rec.update({k: _clean(v) for k, v in intensity_stats(image, part).items()})
            records.append(rec)
    if is_2d and _pixel_units(units, labels, image):
        return to_pixel_units(records)
    return records


def instance_summary(labels: Image, *, split_components: bool = False, bins: int = 10,
                     units: str = "auto") -> dict[str, Any]:
    """Count and size distribution of the instances in ``labels``.

    Args:
        labels: an instance map (each non-zero id one instance, e.g. nuclei) or, with ``split_components``,
            a semantic map whose connected components (8-/26-connected, per label) are the instances.
        split_components: count connected components instead of ids.
        bins: number of histogram bins (fewer when there are fewer instances).
        units: "auto" (sizes in px2 for a 2D map whose pixel size is unknown) or "mm".

    Returns:
        ``{"count", "size_unit" ("mm2" for 2D, "px2" for 2D in pixel units, "ml" for 3D), "size_min",
        "size_median", "size_mean", "size_max", "size_std", "histogram": {"bin_edges", "counts"}}``; with no
        instance, count 0 and None sizes.

    Example:
        >>> lab = np.zeros((10, 10), np.uint8); lab[1:3, 1:3] = 1; lab[5:9, 5:9] = 2
        >>> s = instance_summary(Image.from_array(lab, spacing=(0.5, 0.5), kind="label"))
        >>> s["count"], s["size_min"], s["size_max"]
        (2, 1.0, 4.0)
    """
    arr = label_array(labels)
    sx, sy, sz = labels.geometry.spacing
    is_2d = labels.is_2d
    px = is_2d and _pixel_units(units, labels)
    unit_size = 1.0 if px else (sx * sy if is_2d else sx * sy * sz / 1000.0)
    if split_components:
        counts: list[int] = []
        for value in (int(v) for v in np.unique(arr) if v != 0):
            counts.extend(int(c.sum()) for c in _components(arr == value))
        voxel_counts = np.asarray(counts, dtype=np.int64)
    else:
        voxel_counts = np.bincount(arr.ravel())[1:]
        voxel_counts = voxel_counts[voxel_counts > 0]
    sizes = voxel_counts.astype(float) * unit_size
    out: dict[str, Any] = {"count": int(sizes.size), "size_unit": ("px2" if px else "mm2") if is_2d else "ml"}
    if sizes.size == 0:
        out.update({k: None for k in ("size_min", "size_median", "size_mean", "size_max", "size_std")})
        out["histogram"] = {"bin_edges": [], "counts": []}
        return out
    hist, edges = np.histogram(sizes, bins=max(1, min(int(bins), sizes.size)))
    out.update({
        "size_min": float(sizes.min()), "size_median": float(np.median(sizes)), "size_mean": float(sizes.mean()),
        "size_max": float(sizes.max()), "size_std": float(sizes.std()),
        "histogram": {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in hist]},
    })
    return out


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    seen: set[str] = set()
    for rec in records:
        for key in rec:
            if key not in seen:
                seen.add(key)
                cols.append(key)
    return cols


def to_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
           inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Write records as CSV (one row per record, columns in first-seen order; None is an empty cell).

    The file is written atomically (temporary name, renamed on success) and never overwrites ``inputs``.
    """
    from medimg.io.csv_safe import SafeDictWriter  # cells a spreadsheet would run as formulas are escaped
    from medimg.io.files import atomic_output

    cols = _columns(records)
    with atomic_output(path, inputs=inputs) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = SafeDictWriter(fh, fieldnames=cols, restval="")
            writer.writeheader()
            for rec in records:
                writer.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return Path(path)


def to_json(payload: Any, path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Write ``payload`` (records or a dict holding them) as JSON, atomically; NaN/inf become null."""
    from medimg.core.image import to_jsonable
    from medimg.io.files import atomic_output

    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return _clean(v)

    text = json.dumps(clean(to_jsonable(payload)), indent=2, allow_nan=False)
    with atomic_output(path, inputs=inputs) as tmp:
        Path(tmp).write_text(text + "\n", encoding="utf-8")
    return Path(path)

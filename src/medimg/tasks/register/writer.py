"""What ``medimg register`` writes: one pair's folder (:class:`RegisterResult`) and a batch's summary.

One pair's folder (``result.write(out)``)::

    OUT/warped.nii.gz         MOVING resampled onto FIXED's grid (linear, float32)
    OUT/warped_labels.nii.gz  the moving label map resampled onto FIXED's grid (nearest neighbour), when given
    OUT/transform.tfm         rigid/affine: ITK text transform, fixed points (LPS mm) -> moving points
    OUT/transform.h5          bspline/demons/learned: ITK HDF5 composite [pre-alignment, deformable]
    OUT/displacement.nii.gz   bspline/demons/learned: ITK vector displacement field on FIXED's grid (mm, x y z, LPS)
    OUT/metrics.json          method, metric, seconds, metric before/after, Jacobian statistics (deformable), Dice per
                              label before/after, inverse consistency, TRE before/after (landmarks)
    OUT/report.html           one self-contained report: inputs, settings, metrics, the figures (embedded)
    OUT/figures/*.png         checkerboard.png, difference.png, deformation_grid.png (deformable)

A batch (``write_summary``): ``OUT/summary.csv`` (one row per pair, :data:`SUMMARY_COLUMNS`) and
``OUT/summary.json`` (the same rows with the settings and every pair's metrics or error).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from medimg.core.image import Image
from medimg.tasks.result import Result

if TYPE_CHECKING:
    from medimg.tasks.register.data import Pair

__all__ = ["RegisterResult", "SUMMARY_COLUMNS", "summary_row", "failed_row", "pair_lines", "report_html",
           "write_summary", "jsonable"]

SUMMARY_COLUMNS = ("pair", "status", "fixed", "moving", "method", "metric", "init", "seconds", "metric_before",
                   "metric_after", "dice_before", "dice_after", "folding_fraction", "error")


@dataclass
class RegisterResult(Result):
    """One registered pair, in memory (made by :func:`medimg.tasks.register.pairs.register_images`).

    Attributes:
        registration: the :class:`~medimg.classical.registration.RegistrationResult` (transform, warped image).
        metrics: what metrics.json holds, less ``outputs`` and ``seconds_postprocess`` (added by :meth:`to_dict`).
        fixed, moving: the images. field: the displacement field (deformable methods), else None.
        warped_labels: the moving label map on the fixed grid, when given. figures: caption -> RGB array.
        seconds_computing: seconds spent after the registration (Jacobian, Dice, TRE, figures).
    """

    registration: Any
    metrics: dict[str, Any]
    fixed: Image
    moving: Image
    field: Image | None = None
    warped_labels: Image | None = None
    figures: dict[str, Any] = dataclass_field(default_factory=dict)
    seconds_computing: float = 0.0
    seconds_writing: float | None = None
    kind: ClassVar[str] = "register"

    @property
    def transform_name(self) -> str:
        """``transform.h5`` for deformable transforms (they have a displacement field), else ``transform.tfm``."""
        return "transform.h5" if self.field is not None else "transform.tfm"

    def output_names(self) -> list[str]:
        """The names :meth:`write` puts into its folder (top level), as metrics.json lists them."""
        names = ["warped.nii.gz", self.transform_name, "figures"]
        if self.warped_labels is not None:
            names.append("warped_labels.nii.gz")
        if self.field is not None:
            names.append("displacement.nii.gz")
        return sorted(names) + ["metrics.json", "report.html"]

    def metrics_dict(self) -> dict[str, Any]:
        """metrics.json's content before the JSON conversion (floats as computed, NaN kept)."""
        out = {**self.metrics, "outputs": self.output_names()}
        out["seconds_postprocess"] = self.seconds_computing + (self.seconds_writing or 0.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        """metrics.json's content (JSON-ready, non-finite numbers as null)."""
        return jsonable(self.metrics_dict())

    def summary_lines(self) -> list[str]:
        return pair_lines(self.metrics_dict())

    def write(self, out: str | os.PathLike[str], **options: Any) -> list[Path]:
        """Write the pair's folder ``out`` (created; the files of the module text); returns the written paths."""
        import SimpleITK as sitk

        from medimg.classical.registration import save_transform
        from medimg.io import write
        from medimg.io.files import atomic_output, write_json_atomic
        from medimg.io.sitk_bridge import to_sitk

        t0 = time.perf_counter()
        dest = Path(out)
        dest.mkdir(parents=True, exist_ok=True)
        paths = [dest / "warped.nii.gz"]
        write(self.registration.warped, paths[-1])
        if self.warped_labels is not None:
            paths.append(dest / "warped_labels.nii.gz")
            write(self.warped_labels, paths[-1])
        paths.append(dest / self.transform_name)
        save_transform(self.registration.transform, paths[-1])
        if self.field is not None:
            # an ITK vector image (NIfTI intent "vector"), as ITK, ANTs and 3D Slicer read displacement fields
            paths.append(dest / "displacement.nii.gz")
            with atomic_output(paths[-1]) as tmp:
                sitk.WriteImage(to_sitk(self.field), str(tmp), useCompression=True)
        paths += _write_figures(self.figures, dest / "figures")
        metrics = {**self.metrics, "outputs": self.output_names()}
        paths.append(dest / "report.html")
        with atomic_output(paths[-1]) as tmp:
            tmp.write_text(report_html(metrics, self.figures, self.fixed, self.moving), encoding="utf-8")
        self.seconds_writing = time.perf_counter() - t0
        paths.append(dest / "metrics.json")
        write_json_atomic(paths[-1], self.to_dict())
        return paths


def _figure_name(caption: str) -> str:
    return caption.replace(" ", "_") + ".png"


def _write_figures(figures: dict[str, Any], folder: Path) -> list[Path]:
    from medimg.io.files import atomic_output
    from medimg.report.html import png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for caption, rgb in figures.items():
        path = folder / _figure_name(caption)
        with atomic_output(path) as tmp:
            tmp.write_bytes(png_bytes(rgb))
        paths.append(path)
    return paths


def report_html(m: dict[str, Any], figures: dict[str, Any], fixed: Image, moving: Image) -> str:
    """The pair's report.html: inputs, method and settings, metrics, Jacobian, inverse consistency, TRE, figures."""
    import json

    import SimpleITK as sitk

    from medimg import __version__
    from medimg.report.html import ReportSection, render_html

    def image_items(image) -> dict[str, Any]:
        return {"shape (Z, Y, X)": list(image.spatial_shape), "spacing (mm)": list(image.geometry.spacing),
                "origin (mm, LPS)": list(image.geometry.origin)}

    inputs: dict[str, Any] = {"fixed": m["fixed"], **{f"fixed {k}": v for k, v in image_items(fixed).items()},
                              "moving": m["moving"], **{f"moving {k}": v for k, v in image_items(moving).items()}}
    for key in ("labels", "fixed_labels", "fixed_landmarks", "moving_landmarks"):
        if m.get(key):
            inputs[key.replace("_", " ")] = m[key]
    params = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in m["params"].items()}
    sections = [
        ReportSection("Inputs", items=inputs),
        ReportSection("Method and settings", text=f"{m['method']} registration ({m['transform_type']}), "
                      f"metric {m['metric']}. The transform maps fixed points (LPS mm) into the moving image.",
                      items=params),
    ]
    metrics: dict[str, Any] = {"metric before": m["metric_before"], "metric after": m["metric_after"],
                               "iterations": m["iterations"], "seconds (registration only)": m["seconds"],
                               "stop condition": m["stop_condition"]}
    if "dice" in m:
        metrics["mean Dice before"] = m["dice"]["mean_before"]
        metrics["mean Dice after"] = m["dice"]["mean_after"]
    records = [{"label": k, "Dice before": v["before"], "Dice after": v["after"]}
               for k, v in (m.get("dice") or {}).get("per_label", {}).items()]
    sections.append(ReportSection("Metrics", text="Lower is better for all similarity metrics (ITK negates NCC "
                                  "and mutual information). Dice before: moving labels on the fixed grid without "
                                  "any transform." if "dice" in m else "Lower is better for all similarity "
                                  "metrics (ITK negates NCC and mutual information).", items=metrics,
                                  records=records))
    if "jacobian" in m:
        sections.append(ReportSection("Jacobian determinant", text="Determinant of the Jacobian of T over the "
                                      "fixed grid; det <= 0 is folding.", items=m["jacobian"]))
    ic = dict(m["inverse_consistency"])
    sections.append(ReportSection("Inverse consistency", text=ic.pop("definition"), items=ic))
    if "tre" in m:
        t = m["tre"]
        sections.append(ReportSection(
            "Target registration error", text=f"{t['n']} landmarks. {t['definition']}.",
            items={f"{k} {s} (mm)": t[f"{k}_mm"][s] for k in ("before", "after") for s in ("mean", "median", "max")},
            records=t["per_landmark"]))
    sections.append(ReportSection("Figures", text="Middle slice of the fixed grid (2D images: the image); also in "
                                  "figures/.", figures=figures))
    sections.append(ReportSection("Outputs", items={name: "" for name in m["outputs"]}))
    return render_html(f"Registration: {Path(m['moving']).name} onto {Path(m['fixed']).name}", sections,
                       software={"medimg": __version__, "SimpleITK": sitk.Version.VersionString()})


def summary_row(folder: str, m: dict[str, Any]) -> dict[str, Any]:
    """The summary.csv row of a registered pair (``m``: its metrics.json)."""
    dice = m.get("dice") or {}
    params = m.get("params") or {}
    return {"pair": folder, "status": "ok", "fixed": m["fixed"], "moving": m["moving"], "method": m["method"],
            "metric": m["metric"], "init": params.get("init_used", params.get("init")), "seconds": m["seconds"],
            "metric_before": m["metric_before"], "metric_after": m["metric_after"],
            "dice_before": dice.get("mean_before"), "dice_after": dice.get("mean_after"),
            "folding_fraction": (m.get("jacobian") or {}).get("folding_fraction"), "error": None}


def failed_row(pair: Pair, options: Any, error: str) -> dict[str, Any]:
    """The summary.csv row of a pair whose registration failed with ``error`` (``options``: the run's
    :class:`~medimg.tasks.register.pairs.RegisterOptions`)."""
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(pair=pair.folder(), status="failed", fixed=pair.fixed, moving=pair.moving,
               method=options.method_name, metric=options.metric if options.method != "learned" else None,
               error=error)
    return row


def pair_lines(m: dict[str, Any], prefix: str = "") -> list[str]:
    """The lines ``medimg register`` prints for a registered pair (``m``: its metrics, :meth:`RegisterResult.
    metrics_dict`)."""
    lines = [f"{prefix}{m['method']} ({m['metric']}): metric {m['metric_before']:.5g} -> {m['metric_after']:.5g} "
             f"in {m['seconds']:.2f} s, {m['iterations']} iterations"]
    fallback = (m.get("params") or {}).get("init_fallback")
    if fallback:
        lines.append(f"{prefix}note: {fallback}")
    if "jacobian" in m:
        j = m["jacobian"]
        lines.append(f"{prefix}Jacobian: folding fraction {j['folding_fraction']:.4g}, std log-Jacobian "
                     f"{j['std_log_jacobian']:.4g}")
    ic = m["inverse_consistency"]
    lines.append(f"{prefix}inverse consistency: mean {ic['mean_mm']:.3g} mm, max {ic['max_mm']:.3g} mm")
    if "tre" in m:
        t = m["tre"]
        lines.append(f"{prefix}TRE over {t['n']} landmarks: mean {t['before_mm']['mean']:.3f} -> "
                     f"{t['after_mm']['mean']:.3f} mm, max {t['before_mm']['max']:.3f} -> "
                     f"{t['after_mm']['max']:.3f} mm")
    if "dice" in m:
        lines.append(f"{prefix}mean Dice over {len(m['dice']['per_label'])} labels: {m['dice']['mean_before']:.4f}"
                     f" -> {m['dice']['mean_after']:.4f}")
    return lines


def write_summary(out: str | os.PathLike[str], rows: list[dict[str, Any]], pairs: list[dict[str, Any]], *,
                  pairs_csv: str, options: Any) -> list[Path]:
    """A batch's ``summary.csv`` (``rows``, :data:`SUMMARY_COLUMNS`) and ``summary.json`` (the rows, the settings
    and ``pairs``: each pair's metrics or error) in the folder ``out``; returns the two paths."""
    from medimg import __version__
    from medimg.io.csv_safe import rows_to_text
    from medimg.io.files import atomic_output, write_json_atomic

    folder = Path(out)
    csv_path, json_path = folder / "summary.csv", folder / "summary.json"
    with atomic_output(csv_path) as tmp:
        tmp.write_text(rows_to_text(rows, SUMMARY_COLUMNS), encoding="utf-8")
    failed = sum(1 for r in rows if r.get("status") == "failed")
    doc = {"medimg_version": __version__, "pairs_csv": pairs_csv, "n_pairs": len(rows), "n_failed": failed,
           "settings": options.settings(), "columns": list(SUMMARY_COLUMNS), "rows": rows, "pairs": pairs}
    write_json_atomic(json_path, jsonable(doc))
    return [csv_path, json_path]


def jsonable(value: Any) -> Any:
    """JSON-ready data, non-finite floats as null (metrics.json and summary.json are strict JSON)."""
    import math

    from medimg.core.image import to_jsonable

    value = to_jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value

"""The main job as one library call: ``analyze(image) -> Analysis`` (in memory; ``write(out)`` for the files).

``analyze`` chooses a pipeline (or runs the one named), measures in physical units (pixels, said so, when a 2D image
has no pixel size), and optionally classifies the image with a trained classifier first, so that a model that does
not fit the image fails before any work. A folder of case files (``CASE_0000.nii.gz`` ...) is analysed case by case
into one result. Nothing is written until :meth:`Analysis.write` (the output contract is in
:mod:`medimg.pipelines.writer`); :meth:`Analysis.to_dict` is the same content as JSON for an API.

Errors name the command-line options the values come from (``--pipeline``, ``--classifier``...), as every front
end passes them under these names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.core.errors import InvalidParameterError, MedimgError
from medimg.core.image import Image
from medimg.pipelines.base import AnalysisResult
from medimg.tasks.result import Result

__all__ = ["Analysis", "Classification", "analyze", "apply_pixel_spacing", "in_pixel_units", "combine_cases",
           "classification_only", "load_classifier_model", "classify_image"]


@dataclass(frozen=True)
class Classification:
    """A classifier's verdict on the analysed image: the loaded model and its prediction."""

    model: Any
    prediction: Any


@dataclass
class Analysis(Result):
    """What ``analyze`` found: the pipeline's result, the image it ran on, notes, and a classification."""

    image: Image
    result: AnalysisResult
    source: str
    notes: list[str] = field(default_factory=list)
    classification: Classification | None = None
    inputs: tuple[str, ...] = ()
    kind: str = "analyze"

    def to_dict(self) -> dict[str, Any]:
        """measurements.json's content, with each mask described (shape, labels) instead of its file name."""
        from medimg.core.image import to_jsonable
        from medimg.pipelines.writer import analysis_payload

        masks = {name: {"shape_zyx": list(m.spatial_shape), "labels": self.result.label_names.get(name, {})}
                 for name, m in self.result.masks.items()}
        payload = analysis_payload(self.result, source=self.source, notes=self.notes, mask_files={})
        payload["masks"] = masks
        if self.classification is not None:
            payload["classification"] = self.classification.prediction.to_dict()
            payload["classification"]["model"] = self.classification.model.name
        return to_jsonable(payload)

    def write(self, out: str | os.PathLike[str], **options: Any) -> list[Path]:
        """Write the output contract (:mod:`medimg.pipelines.writer`) into ``out``; returns the files written."""
        from medimg.pipelines.writer import write_analysis

        root = Path(out)
        write_analysis(self.image, self.result, root, source=self.source, inputs=list(self.inputs),
                       notes=self.notes, classification=self.classification)
        return sorted(p for p in root.rglob("*") if p.is_file())

    @property
    def all_notes(self) -> list[str]:
        return list(self.notes) + list(self.result.notes)


# ---- measurement units ------------------------------------------------------------------------------------------
def apply_pixel_spacing(image: Image, given: tuple[float, float, float] | None, path: Any,
                        notes: list[str] | None) -> Image:
    """``image`` with the pixel spacing ``given`` ((sx, sy, sz) or None) applied when it has no spacing of its
    own; the fallback note is added to ``notes`` (when not None) only when no spacing was applied."""
    from medimg.measure.table import SPACING_FALLBACK_NOTE

    if image.metadata.get("spacing_source") == "default_1mm":
        if given:
            sx, sy, _ = given
            image = image.replace(geometry=image.geometry.replace(spacing=(sx, sy, image.spacing[2])))
            image = image.with_metadata(spacing_source="user")
        elif notes is not None and image.is_2d:
            notes.append(SPACING_FALLBACK_NOTE.format(path=path))
    elif given and notes is not None:
        notes.append(f"{path} states its own pixel spacing; --pixel-spacing was not applied")
    return image


def in_pixel_units(image: Image, result: AnalysisResult) -> AnalysisResult:
    """``result`` with its measurements and summary in pixel units (``_px``/``_px2`` keys) when ``image`` is 2D
    with no known pixel size; unchanged otherwise (see :func:`medimg.measure.table.to_pixel_units`)."""
    from medimg.measure.table import spacing_unknown, to_pixel_units

    if spacing_unknown(image):
        result.measurements = to_pixel_units(result.measurements)
        result.summary = to_pixel_units(result.summary)
    return result


def combine_cases(results: list[tuple[str, AnalysisResult]]) -> AnalysisResult:
    """One AnalysisResult for a folder of cases: records and masks prefixed by case, per-case summaries."""
    first = results[0][1]
    names = {r.pipeline for _, r in results}
    if len(names) > 1:
        raise InvalidParameterError("the cases of the folder need different pipelines", parameter="input",
                                    found=sorted(names), fix="analyse one kind of image per folder, or pass "
                                    "--pipeline")
    records: list[dict[str, Any]] = []
    masks: dict[str, Image] = {}
    figures: dict[str, Any] = {}
    label_names: dict[str, dict[int, str]] = {}
    notes: list[str] = []
    warnings: list[str] = []
    for case, r in results:
        records += [{"case": case, **rec} for rec in r.measurements]
        for name, mask in r.masks.items():
            masks[f"{case}_{name}"] = mask
            label_names[f"{case}_{name}"] = r.label_names.get(name, {})
        if len(figures) < 6:
            figures.update({f"{case}: {cap}": fig for cap, fig in r.figures.items()})
        notes += [f"{case}: {n}" for n in r.notes]
        warnings += [f"{case}: {w}" for w in r.warnings]
    summary = {"cases": len(results), "per_case": [{"case": c, **r.summary} for c, r in results]}
    return AnalysisResult(pipeline=first.pipeline, title=f"{first.title} ({len(results)} cases)",
                          method=first.method, parameters=first.parameters, masks=masks, label_names=label_names,
                          measurements=records, summary=summary, figures=figures, notes=notes, warnings=warnings)


def classification_only(reason: str) -> AnalysisResult:
    """The AnalysisResult of ``--pipeline none``: no masks, no measurements; the classification is the result."""
    return AnalysisResult(pipeline="none", title="Image classification",
                          method="No analysis pipeline was run; the image was classified only (see Classification).",
                          parameters={"pipeline_choice": reason}, masks={}, label_names={}, measurements=[])


# ---- the classifier -------------------------------------------------------------------------------------------------
def _with_option(exc: MedimgError, *, parameter: str, path: Any = None, what: str | None = None,
                 fix: str | None = None) -> MedimgError:
    """The same kind of error, naming the option (and file) that caused it."""
    return type(exc)(what or exc.what, path=exc.path if path is None else path, parameter=parameter,
                     expected=exc.expected, found=exc.found, fix=fix or exc.fix)


def load_classifier_model(model: str | os.PathLike[str]) -> Any:
    """Resolve and load a classifier (folder or shipped name) for ``--classifier``; every error names the option."""
    from medimg.tasks.registry import get_task, task_of_folder
    from medimg.zoo import resolve_model

    try:
        folder = resolve_model(model)
    except MedimgError as exc:
        raise _with_option(exc, parameter="--classifier") from exc
    has_plan = (folder / "plan.json").is_file()
    try:
        task = task_of_folder(folder) if has_plan else None
    except MedimgError:
        task = None
    if task != "classify":
        raise InvalidParameterError(
            "not a classification model", path=folder, parameter="--classifier",
            expected="a folder written by `medimg train classify` (plan.json with task binary, multiclass or "
                     "multilabel, and fold_*/model.pt) or a shipped classifier name",
            found="a plan.json of another task (a segmentation model?)" if has_plan else "a folder without plan.json",
            fix="give a classification model; segmentation models run through `medimg predict` or --pipeline")
    try:
        return get_task("classify").loader()(folder)
    except MedimgError as exc:
        raise _with_option(exc, parameter="--classifier") from exc


def classify_image(model: Any, image: Image, *, name: str, uncertainty: str = "auto", explain: str = "gradcam",
                   precision: str = "auto") -> Classification:
    """Classify one image as ``medimg predict`` would; a misfit (dimensions, channels, options) is one error that
    names the option, the image and the model."""
    from medimg.tasks.classify.predictor import predict_samples

    dims = int(model.plan.dims)
    if image.is_2d != (dims == 2):
        have = "2D" if image.is_2d else "3D"
        raise InvalidParameterError(
            f"the image is {have} but classifier '{model.name}' takes {dims}D images", path=name,
            parameter="--classifier", expected=f"a {dims}D image",
            found=f"a {have} image of (Z, Y, X) {image.spatial_shape}",
            fix=f"use a classifier trained on {have} images, or leave --classifier out")
    options = {"--uncertainty": "--classifier-uncertainty", "--explain": "--classifier-explain"}
    try:
        preds = predict_samples(model, {Path(name).name or str(name): image}, uncertainty=uncertainty,
                                explain=explain, precision=precision)
    except InvalidParameterError as exc:
        if exc.parameter in options:
            fix = exc.fix or ""
            for old, new in options.items():
                fix = re.sub(rf"{re.escape(old)}\b", new, fix)
            raise _with_option(exc, parameter=options[exc.parameter], fix=fix) from exc
        what = re.sub(r"^sample '[^']*': ", "", exc.what)
        raise _with_option(exc, parameter="--classifier", path=name,
                           what=f"the image does not fit classifier '{model.name}': {what}",
                           fix=f"{exc.fix or 'give an image like the training images'}, or use a classifier "
                               "trained on images like this one") from exc
    return Classification(model=model, prediction=preds[0])


# ---- the main job ---------------------------------------------------------------------------------------------------
def analyze(image: Image | str | os.PathLike[str], *, pipeline: str | None = None,
            classifier: str | os.PathLike[str] | Any | None = None, classifier_uncertainty: str = "auto",
            classifier_explain: str = "gradcam", pixel_spacing: tuple[float, float, float] | None = None,
            precision: str = "auto", source: str | None = None, notes: list[str] | None = None) -> Analysis:
    """Run the main job on an image, an image file / DICOM series, or a folder of case files; nothing is written.

    Args:
        image: an :class:`Image`, or a path (file, DICOM series folder, or a folder of CASE_0000.* case files).
        pipeline: a pipeline name, "none" (classification only, needs ``classifier``), or None (automatic).
        classifier: a classification model folder, shipped name, or an already loaded model.
        pixel_spacing: (sx, sy, sz) mm for 2D images that carry no pixel size.
        source: how the input is named in the result (default: the path, or "image").
        notes: notes gathered before (e.g. by the caller's reading), kept in front of the analysis notes.

    Raises:
        InvalidParameterError: no pipeline applies (one line saying what the image looks like), "none" without a
            classifier, a classifier that does not fit the image, or a folder whose cases need different pipelines.
    """
    from medimg.pipelines.choose import choose_pipeline, run_pipeline

    notes = list(notes or [])
    requested = pipeline
    if pipeline == "none" and classifier is None:
        raise InvalidParameterError("nothing to run", parameter="--pipeline", expected="--classifier MODEL with "
                                    "--pipeline none", found="--pipeline none alone",
                                    fix="add --classifier MODEL, or leave --pipeline out for the automatic choice")
    inputs: tuple[str, ...] = ()
    if not isinstance(image, Image):
        src = Path(image)
        inputs = (str(src),)
        source = source or str(src)
        from medimg.io.cases import case_files

        cases = case_files(src) if src.is_dir() else {}
        if cases:
            return _analyze_cases(cases, src, pipeline=pipeline, classifier=classifier, pixel_spacing=pixel_spacing,
                                  precision=precision, notes=notes)
        from medimg.io import read

        image = read(src)
    source = source or "image"
    image = apply_pixel_spacing(image, pixel_spacing, source, notes)
    model = None
    if classifier is not None:
        model = load_classifier_model(classifier) if isinstance(classifier, (str, os.PathLike)) else classifier
    classification = None
    if model is not None:
        classification = classify_image(model, image, name=source, uncertainty=classifier_uncertainty,
                                        explain=classifier_explain, precision=precision)  # a misfit fails fast
        if pipeline is None:
            try:
                choose_pipeline(image)
            except InvalidParameterError as exc:
                pipeline = "none"
                notes.append(f"{exc.what.split(';')[0]} (found {exc.found}): only the classification ran")
    if pipeline == "none":
        result = classification_only("chosen by the user (--pipeline none)" if requested == "none" else
                                     "no automatic pipeline for this image")
    else:
        result = in_pixel_units(image, run_pipeline(image, pipeline, precision=precision))
    return Analysis(image=image, result=result, source=source, notes=notes, classification=classification,
                    inputs=inputs)


def _analyze_cases(cases: dict[str, list[Path]], src: Path, *, pipeline: str | None, classifier: Any,
                   pixel_spacing: tuple[float, float, float] | None, precision: str, notes: list[str]) -> Analysis:
    """A folder of image files (not a DICOM folder): one analysis per case, one result."""
    from medimg.io.cases import read_case
    from medimg.measure.table import SPACING_FALLBACK_NOTE
    from medimg.pipelines.choose import run_pipeline

    if classifier is not None:
        raise InvalidParameterError(
            "--classifier classifies one image", path=src, parameter="--classifier",
            expected="one image file or DICOM series", found=f"a folder of {len(cases)} cases",
            fix=f"classify a folder with `medimg predict {classifier} {src} OUT`, or analyse one case")
    results, unknown = [], []
    image = None
    for case, files in sorted(cases.items()):
        image = apply_pixel_spacing(read_case(files), pixel_spacing, files[0], None)
        if image.is_2d and image.metadata.get("spacing_source") == "default_1mm":
            unknown.append(case)
        try:
            result = run_pipeline(image, pipeline, precision=precision)
        except InvalidParameterError as exc:  # name the case that no pipeline applies to
            raise _with_option(exc, parameter=exc.parameter or "--pipeline", path=str(files[0])) from exc
        results.append((case, in_pixel_units(image, result)))
    if unknown:
        what = src if len(unknown) == len(cases) else f"{len(unknown)} of the {len(cases)} cases of {src}"
        notes.append(SPACING_FALLBACK_NOTE.format(path=what))
    return Analysis(image=image, result=combine_cases(results), source=str(src), notes=notes, inputs=(str(src),))

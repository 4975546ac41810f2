"""The result of a segmentation prediction, in memory, and the files ``medimg predict`` writes from it.

:func:`medimg.tasks.segment.predictor.predict` returns a :class:`SegmentResult`; nothing is written until
:meth:`SegmentResult.write`:

* a single input (an image, an image file or a DICOM series folder): the label file ``out`` (its format follows
  the extension), and with ``probabilities=P`` / ``uncertainty=U`` the class probabilities (4D) and the
  predictive entropy map as the files ``P`` and ``U``. All of them or none: when a later file fails, the ones
  written before it are removed;
* a folder of cases: the folder ``out`` with one label file per case, ``CASE.nii.gz`` (``CASE.png`` for 2D raster
  inputs), and ``P/CASE.nii.gz``, ``U/CASE.nii.gz``; each folder appears complete or not at all.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.tasks.result import Result

__all__ = ["SegmentCase", "SegmentResult"]


@dataclass
class SegmentCase:
    """One segmented case: label values on the input grid, and optional probabilities and entropy."""

    case_id: str
    labels: Image
    probabilities: Image | None = None  # (K, Z, Y, X) float32 on the input grid
    uncertainty: Image | None = None  # predictive entropy (nats) on the input grid
    #: Ending of the case's label file in a folder output (".nii.gz", or ".png" for 2D raster inputs).
    suffix: str = ".nii.gz"

    @property
    def file_name(self) -> str:
        return f"{self.case_id}{self.suffix}"


@dataclass
class SegmentResult(Result):
    """What :func:`~medimg.tasks.segment.predictor.predict` found, for one input or a folder of cases."""

    model_name: str
    folds: list[str]
    precision: str
    class_names: list[str]
    label_values: list[int]
    cases: list[SegmentCase]
    #: True for a folder of cases (``write`` then writes folders), False for one image.
    batch: bool = False
    #: The input path (None for an image given in memory); ``write`` never writes over it.
    source: Path | None = None
    warnings: list[str] = field(default_factory=list)

    kind = "segment"

    # ---- for an API ---------------------------------------------------------------------------------------------
    def volumes_ml(self, case: SegmentCase) -> dict[str, float]:
        """Volume (mL) of each foreground class of a case, by class name."""
        from medimg.measure.shape import volume_ml

        labels = np.asarray(case.labels.voxels)[0]
        return {name: round(volume_ml(labels == value, case.labels.geometry), 4)
                for name, value in zip(self.class_names[1:], self.label_values[1:])}

    def to_dict(self) -> dict[str, Any]:
        """Model, folds, precision and per case its grid and the volume of each class (mL); no arrays."""
        return {
            "task": "segment", "model": self.model_name, "folds": list(self.folds), "precision": self.precision,
            "input": None if self.source is None else str(self.source), "batch": self.batch,
            "classes": list(self.class_names[1:]),
            "cases": [{"case": c.case_id, "file": c.file_name if self.batch else None,
                       "shape": list(c.labels.spatial_shape), "spacing": list(c.labels.spacing),
                       "volumes_ml": self.volumes_ml(c)} for c in self.cases],
            "warnings": list(self.warnings),
        }

    # ---- for the command line -----------------------------------------------------------------------------------
    def file_names(self) -> list[str]:
        """The label file name of each case in a folder output, in order."""
        return [c.file_name for c in self.cases]

    def write(self, out: str | os.PathLike[str], *, probabilities: str | os.PathLike[str] | None = None,
              uncertainty: str | os.PathLike[str] | None = None,
              inputs: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
        """Write the labels to ``out`` (a file, or a folder for a folder of cases), and the probabilities and the
        entropy map to ``probabilities`` / ``uncertainty`` when given; returns the paths written.

        ``inputs`` are further paths never to write over (the input path itself is always protected).

        Raises:
            InvalidParameterError: ``probabilities`` or ``uncertainty`` asked for but not computed by ``predict``.
            ImageWriteError: an output over an input, or a folder output that exists and is not empty.
        """
        for flag, path, attr in (("probabilities", probabilities, "probabilities"),
                                 ("uncertainty", uncertainty, "uncertainty")):
            if path and any(getattr(c, attr) is None for c in self.cases):
                raise InvalidParameterError(f"the result holds no {flag}", parameter=flag,
                                            expected=f"a result of predict(..., {flag}=True)", found="none",
                                            fix=f"predict again with {flag}=True")
        protected = [p for p in (*inputs, self.source) if p is not None]
        if not self.batch:
            return self._write_single(out, probabilities, uncertainty, protected)
        return self._write_folder(out, probabilities, uncertainty, protected)

    def _write_single(self, out: str | os.PathLike[str], probabilities: Any, uncertainty: Any,
                      inputs: list[Any]) -> list[Path]:
        from medimg.io import write

        case = self.cases[0]
        written: list[Path] = []
        try:  # all outputs or none: when a later write fails, the files written before it are removed
            for path, image in ((out, case.labels), (probabilities, case.probabilities),
                                (uncertainty, case.uncertainty)):
                if path:
                    write(image, path, inputs=inputs)
                    written.append(Path(path))
        except BaseException:
            for done in written:
                done.unlink(missing_ok=True)
            raise
        return written

    def _write_folder(self, out: str | os.PathLike[str], probabilities: Any, uncertainty: Any,
                      inputs: list[Any]) -> list[Path]:
        from medimg.io import write
        from medimg.io.files import atomic_output_dir

        written: list[Path] = []
        with ExitStack() as stack:
            tmp = stack.enter_context(atomic_output_dir(out, inputs=inputs))
            tmp_prob = stack.enter_context(atomic_output_dir(probabilities, inputs=inputs)) if probabilities else None
            tmp_unc = stack.enter_context(atomic_output_dir(uncertainty, inputs=inputs)) if uncertainty else None
            for case in self.cases:
                write(case.labels, tmp / case.file_name)
                written.append(Path(out) / case.file_name)
                if tmp_prob is not None:
                    write(case.probabilities, tmp_prob / f"{case.case_id}.nii.gz")
                    written.append(Path(probabilities) / f"{case.case_id}.nii.gz")
                if tmp_unc is not None:
                    write(case.uncertainty, tmp_unc / f"{case.case_id}.nii.gz")
                    written.append(Path(uncertainty) / f"{case.case_id}.nii.gz")
        return written

    def summary_lines(self) -> list[str]:
        """One line per case file of a folder output ("[n/N] CASE.nii.gz"), as ``medimg predict`` prints them."""
        if not self.batch:
            return []
        return [f"[{n}/{len(self.cases)}] {name}" for n, name in enumerate(self.file_names(), 1)]

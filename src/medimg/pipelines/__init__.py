"""Analysis pipelines behind ``medimg analyze``: each turns an Image into masks, measurements and figures.

Pipelines register themselves by name (``PIPELINES``); :func:`choose_pipeline` picks one from the modality and
content of the input.
"""

from medimg.pipelines import ct_body, fetal_head, hippocampus, nuclei  # noqa: F401  (register the pipelines)
from medimg.pipelines.base import PIPELINES, AnalysisResult, choose_pipeline, run_pipeline

__all__ = ["PIPELINES", "AnalysisResult", "choose_pipeline", "run_pipeline"]

"""Analysis pipelines behind ``medimg analyze``: each turns an Image into masks, measurements and figures.

Pipelines register themselves by name (``PIPELINES``) with an applies rule (``APPLIES``: image ->
:class:`Applicability`, a confidence, the reason and whether the input is inside what the pipeline was validated
on); :func:`choose_pipeline` takes the most confident validated one, or refuses. :func:`analyze` runs the whole
job and returns an :class:`Analysis` (in memory; ``write(out)`` writes the output contract).
"""

from medimg.pipelines.base import APPLIES, PIPELINES, AnalysisResult, Applicability
from medimg.pipelines.choose import applicability, choose_pipeline, run_pipeline

__all__ = ["PIPELINES", "APPLIES", "AnalysisResult", "Applicability", "applicability", "choose_pipeline",
           "run_pipeline"]

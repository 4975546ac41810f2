"""The automatic choice among the analysis pipelines, and running one (``medimg analyze``'s first step).

The pipelines are the modules listed in :data:`PIPELINE_MODULES`; importing one registers it (and its applies
rule) in :mod:`medimg.pipelines.base`. :func:`choose_pipeline` asks every rule and takes the most confident
validated one at or above :data:`~medimg.pipelines.base.CHOICE_THRESHOLD`; when none applies it refuses with one
line that says what the image looks like.
"""

from __future__ import annotations

import importlib
import inspect

from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.pipelines.base import (
    APPLIES,
    CHOICE_THRESHOLD,
    PIPELINES,
    AnalysisResult,
    Applicability,
    describe_image,
    validation_warning,
)

__all__ = ["PIPELINE_MODULES", "applicability", "choose_pipeline", "run_pipeline"]

#: The pipelines medimg ships (importing one registers it). A new pipeline adds its module here.
PIPELINE_MODULES = ("medimg.pipelines.ct_body", "medimg.pipelines.fetal_head", "medimg.pipelines.hippocampus",
                    "medimg.pipelines.nuclei")


def _load() -> None:
    for module in PIPELINE_MODULES:
        importlib.import_module(module)


def applicability(image: Image) -> dict[str, Applicability]:
    """Every registered pipeline's :class:`Applicability` for ``image`` (pipelines without a rule: 0)."""
    out = {}
    for name in sorted(PIPELINES):
        rule = APPLIES.get(name)
        out[name] = rule(image) if rule is not None else Applicability(0.0, "the pipeline declares no applies "
                                                                            "rule", validated=False)
    return out


def choose_pipeline(image: Image) -> tuple[str, str]:
    """Pick a pipeline from the modality and content; returns (name, reason).

    Every pipeline's applies rule is asked; the most confident one that is validated for the input and at least
    :data:`CHOICE_THRESHOLD` confident is taken.

    Raises:
        InvalidParameterError: no pipeline applies: "no automatic pipeline for <what the image looks like>; use
            --pipeline NAME or a model (--pipeline none --classifier MODEL)".
    """
    scores = applicability(image)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1].confidence)
    for name, a in ranked:
        if a.applies:
            return name, a.reason
    best = ", ".join(f"{n} {a.confidence:.2f} ({a.reason}{'' if a.validated else '; not validated'})"
                     for n, a in ranked[:2])
    raise InvalidParameterError(
        f"no automatic pipeline for {describe_image(image)}; use --pipeline NAME or a model "
        "(--pipeline none --classifier MODEL)",
        parameter="--pipeline",
        expected=f"an image one pipeline applies to with confidence >= {CHOICE_THRESHOLD}",
        found=best,
        fix=f"force one with --pipeline ({', '.join(sorted(PIPELINES))}; its report then carries a warning), "
            "or only classify the image: --pipeline none --classifier MODEL",
    )


def run_pipeline(image: Image, name: str | None = None, *, precision: str = "auto") -> AnalysisResult:
    """Run the named pipeline (or the automatic choice) on ``image``.

    ``precision`` ("auto", "fp32" or "bf16", see :func:`medimg.train.precision.resolve_precision`) reaches the
    pipelines that run a network (they take a ``precision`` keyword); the others ignore it.

    A pipeline named by the caller whose applies rule does not accept the input still runs; the result then
    carries a warning (``result.warnings``) and ``parameters["applicability"]`` records the rule's verdict.
    """
    if name is None:
        name, reason = choose_pipeline(image)
        verdict = APPLIES[name](image)
    else:
        if name not in PIPELINES:
            raise InvalidParameterError(
                "unknown pipeline", parameter="--pipeline", expected=", ".join(sorted(PIPELINES)), found=name,
                fix="pick one of the listed pipelines",
            )
        rule = APPLIES.get(name)
        verdict = rule(image) if rule is not None else None
        reason = "chosen by the user"
    fn = PIPELINES[name][0]
    takes_precision = "precision" in inspect.signature(fn).parameters
    result = fn(image, precision=precision) if takes_precision else fn(image)
    result.parameters = {"pipeline_choice": reason, **result.parameters}
    if takes_precision:
        from medimg.train.precision import precision_name, resolve_precision

        result.parameters["precision"] = precision_name(resolve_precision(precision, "cpu"))
    if verdict is not None:
        result.parameters["applicability"] = verdict.to_dict()
        warning = validation_warning(name, verdict)
        if warning and warning not in result.warnings:
            result.warnings.insert(0, warning)
    return result


_load()  # the registries are full as soon as the choice can be made

"""Evaluation (SPEC §2, §3 stage 8): `evaluate_split` runs gallery + matcher + metrics + report on a split."""

from imagesearch.evaluation.evaluate import (
    ClassifierSection,
    DataSection,
    DetectorSection,
    EvalRun,
    IndexSection,
    ReportConfig,
    evaluate_split,
)

# The stage API's two names the pipeline uses (see `imagesearch.detector`): the config and what runs it.
Run = EvalRun
run = evaluate_split

__all__ = [
    "ClassifierSection",
    "DataSection",
    "DetectorSection",
    "EvalRun",
    "IndexSection",
    "ReportConfig",
    "Run",
    "evaluate_split",
    "run",
]

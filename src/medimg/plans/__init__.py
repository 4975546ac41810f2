"""Dataset fingerprints and training plans: open and verify a dataset, fingerprint it, plan a run, cache cases.

Typical use::

    ds = SegDataset.open("../shared/data/hippocampus")
    verify_dataset(ds).raise_if_bad()
    plan = plan_segmentation(compute_fingerprint(ds), minutes=30)
    plan.save("model/plan.json")
"""

from medimg.plans.cache import PreprocessedCache, cache_key, default_cache_dir, preprocess_case
from medimg.plans.dataset import SegDataset, VerifyReport, verify_dataset
from medimg.plans.fingerprint import Fingerprint, channel_modality, compute_fingerprint
from medimg.plans.plan import SCHEMA_VERSION, AugSpec, NormSpec, Plan
from medimg.plans.planner import plan_segmentation

__all__ = [
    "SegDataset", "VerifyReport", "verify_dataset", "Fingerprint", "compute_fingerprint", "channel_modality",
    "SCHEMA_VERSION", "NormSpec", "AugSpec", "Plan", "plan_segmentation", "preprocess_case", "PreprocessedCache",
    "cache_key", "default_cache_dir",
]

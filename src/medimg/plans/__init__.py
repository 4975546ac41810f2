"""What every task's plan shares: the plan base (JSON round trip, schema version, dotted overrides), the dataset
fingerprint and the model-folder helpers.

Each task's own plan lives in its task package (``medimg.tasks.segment.plan.SegmentPlan``, ...). Typical use::

    from medimg.plans import compute_fingerprint
    from medimg.tasks.segment.data import SegDataset, verify_dataset
    from medimg.tasks.segment.planner import plan_segmentation

    ds = SegDataset.open("../shared/data/hippocampus")
    verify_dataset(ds).raise_if_bad()
    plan = plan_segmentation(compute_fingerprint(ds), minutes=30)
    plan.save("model/plan.json")
"""

from medimg.plans.base import PlanBase, apply_dotted
from medimg.plans.fingerprint import Fingerprint, channel_modality, compute_fingerprint
from medimg.plans.model_folder import check_network_memory, read_plan_dict

__all__ = [
    "PlanBase", "apply_dotted", "Fingerprint", "compute_fingerprint", "channel_modality", "read_plan_dict",
    "check_network_memory",
]

"""The contract every registered task keeps (issue 13): run over ``medimg.tasks.registry.task_names()``.

For each task, on a small real case:
* its plan class reads the shipped model's plan.json and writes it back unchanged (JSON round trip), and the
  registry finds the task from the plan's ``task`` field;
* 20 training iterations through ``medimg.api.train`` lower the loss (mean of the last iterations below the first);
* the trained folder reloads, and predicting twice gives identical results;
* ``predict`` writes nothing; ``result.write(out)`` writes exactly the files it lists.
A task added to the registry without a case here fails ``test_every_task_has_a_contract_case``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medimg.api import TrainOptions
from medimg.tasks.registry import get_task, task_names, task_of_plan
from medimg.testing import hippocampus_subset, require_data
from medimg.train.loop import Callback

#: task -> the shipped model whose plan is round-tripped
SHIPPED = {"segment": "hippocampus", "classify": "adrenalmnist3d", "register": "hippocampus_registration"}
HIPPO_CASES = ["hippocampus_001", "hippocampus_006", "hippocampus_011", "hippocampus_014", "hippocampus_015"]


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_iteration(self, state: Any, record: dict[str, float]) -> None:
        self.losses.append(float(record["loss"]))


def _untimed(data: Any) -> Any:
    """``data`` without its timings (keys naming seconds): the only values two identical runs may differ in."""
    if isinstance(data, dict):
        return {k: _untimed(v) for k, v in data.items() if "second" not in k}
    if isinstance(data, list):
        return [_untimed(v) for v in data]
    return data


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_every_task_has_a_contract_case():
    assert set(task_names()) >= {"segment", "classify", "register"}
    assert set(task_names()) <= set(SHIPPED), "add the new task's shipped model and case to this contract test"


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_plan_json_round_trip_of_the_shipped_model(task):
    from medimg.zoo import resolve_model

    spec = get_task(task)
    path = Path(resolve_model(SHIPPED[task])) / "plan.json"
    data = json.loads(path.read_text())
    assert task_of_plan(data) is spec
    plan = spec.plan_class().from_dict(data)
    assert plan.to_dict() == data
    assert spec.plan_class().from_json(plan.to_json()) == plan
    newer = {**data, "schema_version": spec.plan_class().SCHEMA_VERSION + 1}
    with pytest.raises(Exception, match="newer medimg"):
        spec.plan_class().from_dict(newer)
    with pytest.raises(Exception, match="unknown"):
        spec.plan_class().from_dict({**data, "no_such_field": 1})


def _train(task: str, tmp_path: Path) -> tuple[Path, LossRecorder, Any]:
    """Train 20 iterations of ``task`` on a small real case; returns the model folder, the losses, the input."""
    from medimg.api import train

    rec = LossRecorder()
    out = tmp_path / "model"
    common = dict(fold=0, iterations=20, seed=0, precision="fp32")
    if task == "segment":
        data = hippocampus_subset(tmp_path / "data", HIPPO_CASES)
        train(task, data, out, TrainOptions(n_folds=5, overrides=(("batch_size", 2),), **common), callbacks=[rec])
        sample = data / "imagesTr" / "hippocampus_001_0000.nii.gz"
    elif task == "classify":
        data = require_data("medmnist_more", "breastmnist_trainval.npz")
        train(task, data, out, TrainOptions(split="train", **common), callbacks=[rec])
        sample = data
    else:
        data = hippocampus_subset(tmp_path / "data", HIPPO_CASES)
        train(task, data, out, TrainOptions(n_folds=5, **common), callbacks=[rec])
        sample = (data / "imagesTr" / "hippocampus_001_0000.nii.gz", data / "imagesTr" / "hippocampus_006_0000.nii.gz")
    return out, rec, sample


def _predict_twice(task: str, out: Path, sample: Any) -> tuple[Any, Any]:
    from medimg.api import predict, register

    if task == "segment":
        return predict(out, sample), predict(out, sample)
    if task == "classify":
        opts = dict(split="val", explain="none", uncertainty="tta")
        return predict(out, sample, **opts), predict(out, sample, **opts)
    fixed, moving = sample
    return (register(fixed, moving, method="learned", model=str(out)),
            register(fixed, moving, method="learned", model=str(out)))


@pytest.mark.realdata
@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_train_lowers_loss_reload_predicts_identically_and_writer_lists_its_files(task, tmp_path):
    out, rec, sample = _train(task, tmp_path)
    losses = np.array(rec.losses)
    assert len(losses) == 20
    assert losses[-5:].mean() < losses[:5].mean(), f"{task}: loss did not fall in 20 iterations: {losses.round(3)}"
    for name in ("plan.json", "fold_0/model.pt", "fold_0/metrics.json"):
        assert (out / name).is_file(), name
    assert task_of_plan(json.loads((out / "plan.json").read_text())) is get_task(task)

    before = _files(tmp_path)
    first, second = _predict_twice(task, out, sample)
    assert _files(tmp_path) == before, "predict must not write files"
    a, b = _untimed(first.to_dict()), _untimed(second.to_dict())
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)

    dest = tmp_path / "written" / ("seg.nii.gz" if task == "segment" else "result")
    written = first.write(dest)
    assert written and all(Path(p).is_file() for p in written)
    assert set(map(Path, written)) == _files(tmp_path / "written")


def test_registration_models_are_not_run_by_predict():
    from medimg.api import predict
    from medimg.core.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="medimg register"):
        predict("hippocampus_registration", "any.nii.gz")

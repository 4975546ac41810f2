"""The segmentation task's library interface: the plan of the shipped models round-trips byte for byte, the
registry opens them by their plan's task, ``predict`` computes in memory (no file written) and ``result.write``
writes exactly the files ``medimg predict`` writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import medimg.zoo
from medimg.cli.main import main
from medimg.core.errors import InvalidParameterError
from medimg.io import read
from medimg.metrics.segmentation import dice_per_label
from medimg.tasks.registry import get_task, open_model
from medimg.tasks.segment.plan import SegmentPlan
from medimg.tasks.segment.predictor import SegmentationModel, load, predict
from medimg.tasks.segment.writer import SegmentResult
from medimg.testing import require_data

ZOO = Path(medimg.zoo.__file__).parent
#: A validation case of the shipped hippocampus model's fold 0 (src/medimg/zoo/hippocampus/splits.json).
CASE = "hippocampus_001"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["hippocampus", "fetal_head"])
def test_shipped_plans_round_trip_byte_for_byte(name, tmp_path):
    path = ZOO / name / "plan.json"
    text = path.read_text(encoding="utf-8")
    plan = SegmentPlan.from_json(text)
    assert plan.to_json() == text
    assert SegmentPlan.from_dict(json.loads(plan.to_json())) == plan
    plan.save(tmp_path / "plan.json")
    assert (tmp_path / "plan.json").read_bytes() == path.read_bytes()


def test_replace_is_the_base_one_and_keeps_the_cascade_channels():
    plan = SegmentPlan.load(ZOO / "hippocampus" / "plan.json")
    fcm = plan.replace(cascade="fcm")
    assert fcm.network["in_channels"] == plan.in_channels + 3 and fcm.network_in_channels == 4
    assert fcm.replace(cascade="none") == plan
    assert plan.replace(**{"network.base_channels": 8}).network["base_channels"] == 8
    with pytest.raises(InvalidParameterError, match="unknown nested plan field"):
        plan.replace(**{"network.base_chanels": 8})
    with pytest.raises(InvalidParameterError, match="not a segment plan"):
        SegmentPlan.from_dict({**plan.to_dict(), "task": "binary"})


def test_the_registry_opens_a_shipped_model_by_its_plan():
    spec = get_task("segment")
    assert spec.plan_class() is SegmentPlan and spec.options[0] == "splits"
    found, model = open_model("hippocampus")
    assert found.name == "segment" and isinstance(model, SegmentationModel) and model.folds == ["fold_0"]


@pytest.fixture(scope="module")
def hippo_model() -> SegmentationModel:
    return load(ZOO / "hippocampus")


def test_predict_writes_nothing_and_write_writes_what_the_command_writes(hippo_model, tmp_path, monkeypatch):
    image = require_data("hippocampus", "imagesTr", f"{CASE}_0000.nii.gz")
    truth = read(require_data("hippocampus", "labelsTr", f"{CASE}.nii.gz"), kind="label")
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    result = predict(hippo_model, image, probabilities=True, uncertainty=True)
    assert _files(tmp_path) == before  # computed in memory only
    assert isinstance(result, SegmentResult) and not result.batch and len(result.cases) == 1
    labels = np.asarray(result.cases[0].labels.voxels)[0]
    dice = dice_per_label(labels, np.asarray(truth.voxels)[0], [1, 2])
    assert min(dice.values()) > 0.7, dice  # the shipped model segments both structures of an unseen case
    data = result.to_dict()
    json.dumps(data)
    assert data["model"] == "hippocampus" and set(data["cases"][0]["volumes_ml"]) == {"anterior", "posterior"}
    assert all(v > 0 for v in data["cases"][0]["volumes_ml"].values())

    out = tmp_path / "lib"
    paths = result.write(out / "seg.nii.gz", probabilities=out / "prob.nii.gz", uncertainty=out / "ent.nii.gz")
    assert paths == [out / "seg.nii.gz", out / "prob.nii.gz", out / "ent.nii.gz"]
    cli = tmp_path / "cli"
    assert main(["predict", "hippocampus", str(image), str(cli / "seg.nii.gz"), "--quiet", "--probabilities",
                 str(cli / "prob.nii.gz"), "--uncertainty", str(cli / "ent.nii.gz")]) == 0
    assert sorted(_files(out)) == sorted(_files(cli))
    for name in ("seg.nii.gz", "prob.nii.gz", "ent.nii.gz"):
        np.testing.assert_array_equal(read(out / name).voxels, read(cli / name).voxels)
    np.testing.assert_array_equal(np.asarray(read(out / "seg.nii.gz", kind="label").voxels)[0], labels)


def test_a_folder_of_cases_gives_a_folder(hippo_model, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(require_data("hippocampus", "imagesTr", f"{CASE}_0000.nii.gz"), src / f"{CASE}_0000.nii.gz")
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    result = predict(hippo_model, src, postprocess=False)
    assert _files(tmp_path) == before
    assert result.batch and result.file_names() == [f"{CASE}.nii.gz"]
    assert result.summary_lines() == [f"[1/1] {CASE}.nii.gz"]
    with pytest.raises(InvalidParameterError, match="holds no probabilities"):
        result.write(tmp_path / "never", probabilities=tmp_path / "p")
    assert not (tmp_path / "never").exists()
    assert result.write(tmp_path / "out") == [tmp_path / "out" / f"{CASE}.nii.gz"]
    assert main(["predict", "hippocampus", str(src), str(tmp_path / "cli"), "--quiet", "--no-postprocess"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "out" / f"{CASE}.nii.gz").voxels,
                                  read(tmp_path / "cli" / f"{CASE}.nii.gz").voxels)

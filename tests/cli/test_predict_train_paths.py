"""Predict and train paths (issue 12 items 5, 7, 11 and 13): a model folder opens by its plan's task, folder
prediction writes probabilities and uncertainty, a trained fold is not overwritten, `train segment` decides
postprocess.json, --precision everywhere, weights-only loading, model folders outside the data, one-line errors for
broken model files. Real data: the shared hippocampus set and the shipped zoo models."""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from medimg.cli.main import build_parser, main
from medimg.core.errors import InvalidParameterError
from medimg.io import read
from medimg.tasks.registry import task_of_folder
from medimg.testing import hippocampus_subset, one_line_error, require_data
from medimg.zoo import ZOO, resolve_model

CASES = ["hippocampus_001", "hippocampus_006", "hippocampus_011", "hippocampus_014"]
SAMPLE = Path(str(files("medimg.data") / "hippocampus_sample" / "hippocampus_001.nii.gz"))


class _Evil:
    """Unpickling this object opens (creates) ``marker``: a stand-in for arbitrary code in a crafted model.pt."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def hippo(tmp_path_factory) -> Path:
    return hippocampus_subset(tmp_path_factory.mktemp("hippo"), CASES)


@pytest.fixture(scope="module")
def seg_model(hippo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "seg"
    assert main(["train", "segment", str(hippo), "-o", str(out), "--fold", "0", "--folds", "2", "--iterations", "2",
                 "--cache", str(tmp_path_factory.mktemp("cache")), "--quiet", "--seed", "1",
                 "--set", "network.base_channels=8", "--precision", "fp32"]) == 0
    return out


# ---- item 5: a model folder opens by its plan's task ------------------------------------------------------------
def test_every_shipped_zoo_model_opens_by_its_plan_task():
    from medimg.tasks.classify.predictor import load as load_classifier
    from medimg.tasks.register.predictor import LearnedRegistration
    from medimg.tasks.segment.predictor import load_model

    loaders = {"segment": load_model, "classify": load_classifier, "register": LearnedRegistration.load}
    shipped = [e for e in ZOO.values() if e.shipped]
    assert {"hippocampus", "adrenalmnist3d", "hippocampus_registration"} <= {e.name for e in shipped}
    for entry in shipped:
        folder = resolve_model(entry.name)
        assert task_of_folder(folder) == entry.task, entry.name
        assert loaders[entry.task](folder) is not None
        for other, load in loaders.items():
            if other != entry.task:  # another kind's loader refuses it with a medimg error, not a crash
                with pytest.raises((InvalidParameterError, OSError)):
                    load(folder)


def test_predict_with_the_registration_model_points_to_register(tmp_path, capsys):
    out = tmp_path / "o.nii.gz"
    assert main(["predict", "hippocampus_registration", str(SAMPLE), str(out)]) == 2
    one_line_error(capsys.readouterr().err, "medimg register FIXED MOVING -o OUT --method learned --model "
                   "hippocampus_registration")
    assert not out.exists()


def test_unknown_plan_task_is_one_line(tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "plan.json").write_text('{"schema_version": 1, "task": "detect"}')
    assert main(["predict", str(folder), str(SAMPLE), str(tmp_path / "o.nii.gz")]) == 2
    one_line_error(capsys.readouterr().err, "unknown model task")


# ---- item 7a: folder prediction writes --probabilities / --uncertainty per case ---------------------------------
def test_folder_prediction_writes_probabilities_and_uncertainty_per_case(hippo, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for c in CASES[:2]:
        shutil.copy(hippo / "imagesTr" / f"{c}_0000.nii.gz", src)
    out, prob, unc = tmp_path / "labels", tmp_path / "P", tmp_path / "U"
    assert main(["predict", "hippocampus", str(src), str(out), "--probabilities", str(prob), "--uncertainty",
                 str(unc), "--quiet", "--precision", "fp32"]) == 0
    for c in CASES[:2]:
        image = read(src / f"{c}_0000.nii.gz")
        p, u = read(prob / f"{c}.nii.gz"), read(unc / f"{c}.nii.gz")
        image.check_same_grid(p)
        image.check_same_grid(u)
        assert p.n_channels == 3
        np.testing.assert_allclose(np.asarray(p.voxels).sum(axis=0), 1.0, atol=1e-3)
        assert float(np.asarray(u.voxels).min()) >= 0 and float(np.asarray(u.voxels).max()) <= np.log(3) + 1e-4
        assert (out / f"{c}.nii.gz").is_file()
    # a --probabilities folder that already holds files is refused before anything is computed or written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["predict", "hippocampus", str(src), str(tmp_path / "labels2"), "--probabilities",
                 str(tmp_path / "full")]) == 2
    one_line_error(capsys.readouterr().err, "--probabilities", "not empty")
    assert not (tmp_path / "labels2").exists() and (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_bad_probabilities_path_leaves_no_label_file(tmp_path, capsys):
    out = tmp_path / "pred.nii.gz"
    (tmp_path / "adir").mkdir()
    assert main(["predict", "hippocampus", str(SAMPLE), str(out), "--probabilities", str(tmp_path / "adir")]) == 2
    one_line_error(capsys.readouterr().err, "--probabilities")
    assert not out.exists()


# ---- item 7b: a trained fold is not overwritten -----------------------------------------------------------------
def test_second_train_without_resume_is_refused(seg_model, hippo, tmp_path, capsys):
    out = tmp_path / "seg"
    shutil.copytree(seg_model, out)
    before = (out / "fold_0" / "model.pt").read_bytes()
    plan_before = (out / "plan.json").read_text()
    assert main(["train", "segment", str(hippo), "-o", str(out), "--fold", "0", "--iterations", "2"]) == 2
    one_line_error(capsys.readouterr().err, "fold already trained", "--resume")
    assert (out / "fold_0" / "model.pt").read_bytes() == before and (out / "plan.json").read_text() == plan_before


@pytest.mark.parametrize("task", ["classify", "register"])
def test_second_train_of_classify_and_register_is_refused(task, hippo, tmp_path, capsys):
    data = require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz") if task == "classify" else hippo
    out = tmp_path / "m"
    (out / "fold_1").mkdir(parents=True)
    (out / "fold_1" / "model.pt").write_bytes(b"trained weights")
    args = ["--split", "train"] if task == "classify" else []
    assert main(["train", task, str(data), "-o", str(out), "--fold", "1", "--iterations", "2", *args]) == 2
    one_line_error(capsys.readouterr().err, "fold already trained", "--resume")
    assert sorted(p.name for p in out.rglob("*")) == ["fold_1", "model.pt"]
    assert (out / "fold_1" / "model.pt").read_bytes() == b"trained weights"


# ---- item 7c: train segment decides postprocess.json; predict follows it -----------------------------------------
def test_train_segment_writes_postprocess_json_used_by_predict(seg_model, tmp_path):
    from medimg.tasks.segment.predictor import load_model, predict_image

    post = json.loads((seg_model / "postprocess.json").read_text())
    assert post["per_fold"]["fold_0"]["n_cases"] == 2 and "fold_0" in post["decided_on"]
    assert all(1 <= c <= 2 for c in post["largest_component_classes"])
    metrics = json.loads((seg_model / "fold_0" / "metrics.json").read_text())
    assert metrics["postprocess"] == post["largest_component_classes"]
    fold = post["per_fold"]["fold_0"]
    expected = [c for c in (1, 2) if fold["dice_largest_component"][c - 1] > fold["dice"][c - 1]]
    assert post["largest_component_classes"] == expected
    model_dir = tmp_path / "m"
    shutil.copytree(seg_model, model_dir)
    (model_dir / "postprocess.json").write_text(json.dumps({**post, "largest_component_classes": [1, 2]}))
    pred = predict_image(load_model(model_dir), read(SAMPLE))
    assert pred.labels.history[-1].params["largest_component_classes"] == [1, 2]
    labels = np.asarray(pred.labels.voxels[0])
    for c in (1, 2):
        assert ndimage.label(labels == c)[1] <= 1


def test_postprocess_decision_pools_the_folds(tmp_path):
    from medimg.tasks.segment.trainer import decide_postprocess

    decide_postprocess(tmp_path, "fold_0", {"n_cases": 3, "dice_per_class": [0.8, 0.7],
                                            "dice_per_class_largest_component": [0.9, 0.6]})
    assert json.loads((tmp_path / "postprocess.json").read_text())["largest_component_classes"] == [1]
    # a second fold with more cases where class 1 loses and class 2 gains flips the pooled decision
    out = decide_postprocess(tmp_path, "fold_1", {"n_cases": 9, "dice_per_class": [0.8, 0.7],
                                                  "dice_per_class_largest_component": [0.75, 0.75]})
    assert out["largest_component_classes"] == [2] and sorted(out["per_fold"]) == ["fold_0", "fold_1"]


# ---- item 11: precision --------------------------------------------------------------------------------------------
def test_resolver_follows_the_cpu_flags(tmp_path, monkeypatch):
    import medimg.train.precision as prec

    no_bf16 = tmp_path / "cpuinfo_avx2"
    no_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n")
    with_bf16 = tmp_path / "cpuinfo_bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert not prec.cpu_supports_bf16(no_bf16) and prec.cpu_supports_bf16(with_bf16)
    assert not prec.cpu_supports_bf16(tmp_path / "absent")
    monkeypatch.setattr(prec, "CPUINFO", str(no_bf16))
    assert prec.resolve_precision("auto", "cpu") is None
    assert prec.precision_name(prec.resolve_precision("auto")) == "fp32"
    assert prec.resolve_precision("bf16", "cpu") is torch.bfloat16 and prec.resolve_precision("fp32") is None
    monkeypatch.setattr(prec, "CPUINFO", str(with_bf16))
    if prec.sys.platform.startswith("linux"):
        assert prec.resolve_precision("auto", "cpu") is torch.bfloat16
    with pytest.raises(InvalidParameterError, match="unknown precision"):
        prec.resolve_precision("fp16")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predict_precision_decides_autocast(precision, tmp_path, monkeypatch, capsys):
    real, calls = torch.autocast, []

    def recording(*args, **kwargs):
        if kwargs.get("enabled", True):
            calls.append(kwargs.get("dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording)
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", "hippocampus", str(SAMPLE), str(out), "--precision", precision]) == 0
    assert (calls == []) if precision == "fp32" else (calls and set(calls) == {torch.bfloat16})
    assert f", {precision})" in capsys.readouterr().out


def test_precision_option_on_every_predict_and_train_command():
    commands = [["predict", "M", "IN", "OUT"], ["train", "segment", "D", "-o", "M"],
                ["train", "classify", "D", "-o", "M"], ["train", "register", "D", "-o", "M"]]
    for argv in commands:
        parser = build_parser(argv)
        assert parser.parse_args(argv).precision == "auto"
        for value in ("auto", "fp32", "bf16"):
            assert parser.parse_args([*argv, "--precision", value]).precision == value
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, "--precision", "fp16"])


def test_training_records_its_precision(seg_model):
    metrics = json.loads((seg_model / "fold_0" / "metrics.json").read_text())
    assert metrics["precision"] == "fp32" and metrics["autocast_bf16"] is False


# ---- item 13: weights-only loading, outputs outside inputs, broken model files ----------------------------------
def test_crafted_pickle_is_refused_and_never_run(seg_model, hippo, tmp_path, capsys):
    proof = tmp_path / "proof.pt"
    torch.save(_Evil(tmp_path / "ran_anyway"), proof)  # the crafted file does run code when fully unpickled:
    torch.load(proof, weights_only=False)
    assert (tmp_path / "ran_anyway").exists()

    marker = tmp_path / "pwned"
    out = tmp_path / "seg"
    shutil.copytree(seg_model, out)
    torch.save(_Evil(marker), out / "fold_0" / "checkpoint.pt")
    assert main(["train", "segment", str(hippo), "-o", str(out), "--fold", "0", "--iterations", "3", "--resume",
                 "--cache", str(tmp_path / "cache")]) == 2
    one_line_error(capsys.readouterr().err, "checkpoint", "weights_only")
    assert not marker.exists()

    torch.save(_Evil(marker), out / "fold_0" / "model.pt")
    assert main(["predict", str(out), str(SAMPLE), str(tmp_path / "o.nii.gz")]) == 2
    one_line_error(capsys.readouterr().err, "model.pt")
    assert not marker.exists() and not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("model", ["hippocampus", "adrenalmnist3d", "hippocampus_registration"])
def test_garbage_model_pt_is_one_line(model, tmp_path):
    from medimg.core.errors import ImageReadError
    from medimg.tasks.classify.predictor import load as load_classifier
    from medimg.tasks.register.predictor import LearnedRegistration
    from medimg.tasks.segment.predictor import load_model

    folder = tmp_path / model
    shutil.copytree(resolve_model(model), folder)
    (folder / "fold_0" / "model.pt").write_bytes(b"\x80\x04garbage" * 10)
    load = {"hippocampus": load_model, "adrenalmnist3d": load_classifier,
            "hippocampus_registration": LearnedRegistration.load}[model]
    with pytest.raises(ImageReadError, match="model weights"):
        load(folder)


def test_garbage_model_pt_in_predict_exits_2(tmp_path, capsys):
    folder = tmp_path / "hippocampus"
    shutil.copytree(resolve_model("hippocampus"), folder)
    (folder / "fold_0" / "model.pt").write_bytes(b"not a torch file")
    assert main(["predict", str(folder), str(SAMPLE), str(tmp_path / "o.nii.gz")]) == 2
    one_line_error(capsys.readouterr().err, "model.pt")


@pytest.mark.parametrize("where", ["equal", "inside", "contains"])
def test_model_folder_must_stay_outside_the_dataset(where, hippo, tmp_path, capsys):
    data = tmp_path / "data" / "hippo"
    shutil.copytree(hippo, data)
    listing = sorted(str(p) for p in data.rglob("*"))
    out = {"equal": data, "inside": data / "model", "contains": tmp_path / "data"}[where]
    for task in ("segment", "register"):
        assert main(["train", task, str(data), "-o", str(out), "--iterations", "2"]) == 2
        one_line_error(capsys.readouterr().err, "model folder", "input")
    assert sorted(str(p) for p in data.rglob("*")) == listing  # no plan.json, no fingerprint.json
    npz = tmp_path / "data" / "small.npz"
    np.savez(npz, train_images=np.zeros((4, 8, 8, 8), np.uint8), train_labels=np.array([[0], [1], [0], [1]]))
    assert main(["train", "classify", str(npz), "-o", str(npz), "--split", "train", "--iterations", "2"]) == 2
    one_line_error(capsys.readouterr().err, "model folder", "input")
    assert npz.is_file()


def test_broken_postprocess_json_is_one_line(tmp_path, capsys):
    folder = tmp_path / "hippocampus"
    shutil.copytree(resolve_model("hippocampus"), folder)
    for text in ("{broken", '{"largest_component_classes": [7]}', "[1, 2]"):
        (folder / "postprocess.json").write_text(text)
        assert main(["predict", str(folder), str(SAMPLE), str(tmp_path / "o.nii.gz")]) == 2
        one_line_error(capsys.readouterr().err, "postprocess.json")
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("model", ["hippocampus", "adrenalmnist3d", "hippocampus_registration"])
def test_plan_needing_more_memory_than_the_machine_is_one_line(model, tmp_path, capsys):
    folder = tmp_path / model
    shutil.copytree(resolve_model(model), folder)
    plan = json.loads((folder / "plan.json").read_text())
    key = {"hippocampus": "patch_size", "adrenalmnist3d": "input_size", "hippocampus_registration": "grid"}[model]
    plan[key] = [4096, 4096, 4096]  # 256 GB for one float32 channel of one sample
    plan["batch_size"] = 64
    (folder / "plan.json").write_text(json.dumps(plan))
    if model == "hippocampus_registration":
        from medimg.tasks.register.predictor import LearnedRegistration

        with pytest.raises(InvalidParameterError, match="more memory"):
            LearnedRegistration.load(folder)
        return
    assert main(["predict", str(folder), str(SAMPLE), str(tmp_path / "o")]) == 2
    one_line_error(capsys.readouterr().err, "more memory", key)


def test_training_plan_needing_more_memory_is_refused_before_writing(hippo, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "segment", str(hippo), "-o", str(out), "--iterations", "2", "--cache",
                 str(tmp_path / "c"), "--set", "batch_size=100000000"]) == 2
    one_line_error(capsys.readouterr().err, "more memory")
    assert not out.exists()

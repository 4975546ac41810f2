"""The classification plan: rules on real data (BUSI, AdrenalMNIST3D, DICOM series), JSON round trips,
overrides and their validation, and the deterministic preprocessing shared by training and prediction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medimg.augment.batch import AugSpec
from medimg.core.errors import InvalidParameterError
from medimg.tasks.classify.data import open_classification_dataset
from medimg.tasks.classify.plan import CLASSIFY_SCHEMA_VERSION, ClassifyPlan
from medimg.tasks.classify.planner import estimate_gflops, estimate_memory_gb, plan_classification
from medimg.tasks.classify.preprocess import preprocess_sample
from medimg.testing import require_data


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)


def _round_trip(plan: ClassifyPlan, tmp_path: Path) -> None:
    path = plan.save(tmp_path / "model" / "plan.json")
    again = ClassifyPlan.load(path)
    assert again == plan and again.to_json() == plan.to_json()
    assert json.loads(path.read_text())["schema_version"] == CLASSIFY_SCHEMA_VERSION


def _small_plan(**changes) -> ClassifyPlan:
    values = dict(schema_version=1, task="multiclass", class_names=("a", "b", "c"), dims=2, in_channels=1,
                  input_size=(16, 12))
    values.update(changes)
    return ClassifyPlan(**values)


@pytest.fixture(scope="module")
def busi():
    return open_classification_dataset(require_data("breast_ultrasound_busi"))


@pytest.fixture(scope="module")
def adrenal():
    return open_classification_dataset(require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz"))


# ---- real data --------------------------------------------------------------------------------------------------
def test_busi_plan(busi, tmp_path):
    plan = plan_classification(busi, minutes=30)
    assert plan.task == "multiclass" and plan.class_names == ("benign", "malignant", "normal")
    assert plan.dims == 2 and plan.in_channels == 1 and plan.input_size == (224, 224)
    assert plan.model == "resnet18" and plan.stem == "imagenet" and plan.normalization == "zscore"
    # imbalanced (348 / 172 / 108): weighted cross-entropy, inverse frequency, uniform sampling
    assert plan.imbalance_ratio == pytest.approx(348 / 108)
    assert plan.loss == "weighted_ce" and plan.sampling == "uniform"
    assert plan.class_weights == pytest.approx([628 / (3 * 348), 628 / (3 * 172), 628 / (3 * 108)], rel=1e-5)
    assert any("imbalance ratio 3.22" in n and "weighted cross-entropy" in n for n in plan.notes)
    assert plan.n_folds == 5 and plan.batch_size >= 2 and plan.iterations > 0 and plan.minutes == 30
    assert plan.dataset_summary["class_counts"] == {"benign": 348, "malignant": 172, "normal": 108}
    _round_trip(plan, tmp_path)
    x = preprocess_sample(busi.load(0), plan)
    assert x.shape == (1, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    assert abs(float(x.mean())) < 0.05 and 0.9 < float(x.std()) < 1.1
    assert np.array_equal(x, preprocess_sample(busi.load(0), plan))  # deterministic


def test_adrenal_plan(adrenal, tmp_path):
    plan = plan_classification(adrenal, minutes=30)
    assert plan.task == "binary" and plan.dims == 3 and plan.in_channels == 1
    assert plan.input_size == (64, 64, 64)  # at the 3D cap: kept as is
    assert plan.model == "resnet18" and plan.loss == "weighted_ce" and plan.imbalance_ratio == pytest.approx(
        1005 / 281)
    assert plan.batch_size <= 8 and plan.model_width in (16, 32, 64)
    _round_trip(plan, tmp_path)
    x = preprocess_sample(adrenal.load("val_0"), plan)
    assert x.shape == (1, 64, 64, 64) and x.dtype == np.float32


def test_dicom_series_plan(tmp_path):
    study = require_data("brain_mri_dicom", "Study1")
    series = sorted(p for p in study.iterdir() if p.is_dir() and "-" in p.name)
    (tmp_path / "s.csv").write_text("path,label\n" + "\n".join(
        f"{s},{'T1' if 'T1' in s.name else 'other'}" for s in series) + "\n")
    ds = open_classification_dataset(tmp_path / "s.csv")
    plan = plan_classification(ds, minutes=5)
    # 22 x 512 x 512 at 6.5 x 0.43 x 0.43 mm: the in-plane axes shrink to 64, z keeps its 22 slices
    assert plan.dims == 3 and plan.input_size == (22, 64, 64) and plan.normalization == "percentile"
    assert plan.loss == "ce" and plan.class_weights is None and plan.n_folds == 2
    _round_trip(plan, tmp_path)
    x = preprocess_sample(ds.load(0), plan)
    assert x.shape == (1, 22, 64, 64) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


# ---- rules on small synthetic datasets ----------------------------------------------------------------------------
def test_severe_imbalance_gives_balanced_sampling(tmp_path):
    for k in range(11):
        _png(tmp_path / "d" / "common" / f"{k}.png", np.full((28, 28), k, np.uint8))
    _png(tmp_path / "d" / "rare" / "0.png", np.full((28, 28), 99, np.uint8))
    plan = plan_classification(open_classification_dataset(tmp_path / "d"))
    assert plan.imbalance_ratio == 11 and plan.sampling == "balanced" and plan.loss == "ce"
    assert plan.class_weights is None and any("balanced sampling" in n for n in plan.notes)
    assert plan.input_size == (28, 28) and plan.stem == "small"  # small inputs are kept, with the small stem
    assert plan.n_folds == 2


def test_rgb_and_grey_in_rgb(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for k in range(3):
            _png(tmp_path / "rgb" / cls / f"{k}.png", rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
            grey = rng.integers(0, 255, (40, 30), dtype=np.uint8)
            _png(tmp_path / "grey3" / cls / f"{k}.png", np.stack([grey] * 3, axis=-1))
    rgb = open_classification_dataset(tmp_path / "rgb")
    plan = plan_classification(rgb)
    assert plan.in_channels == 3 and plan.normalization == "rgb" and len(plan.channel_mean) == 3
    assert plan.channel_mean == pytest.approx([0.5] * 3, abs=0.05) and plan.loss == "ce"
    x = preprocess_sample(rgb.load(0), plan)
    assert x.shape == (3, 40, 30) and abs(float(x.mean())) < 0.2
    grey3 = open_classification_dataset(tmp_path / "grey3")
    assert grey3.channels == 3
    gplan = plan_classification(grey3)
    assert gplan.in_channels == 1 and gplan.normalization == "zscore"
    g = preprocess_sample(grey3.load(0), gplan)
    assert g.shape == (1, 40, 30)
    assert np.allclose(g, preprocess_sample(grey3.load(0)[:1], gplan))  # equal channels: the first one


def test_multilabel_plan(tmp_path):
    rows = []
    for k in range(8):
        _png(tmp_path / f"{k}.png", np.full((20, 20), k * 10, np.uint8))
        rows.append(f"{k}.png,{int(k < 2)},{int(k % 2)}")
    (tmp_path / "m.csv").write_text("path,effusion,nodule\n" + "\n".join(rows) + "\n")
    plan = plan_classification(open_classification_dataset(tmp_path / "m.csv"))
    assert plan.task == "multilabel" and plan.loss == "weighted_bce" and plan.sampling == "uniform"
    assert plan.class_weights == pytest.approx([6 / 2, 4 / 4]) and plan.imbalance_ratio == 3
    with pytest.raises(InvalidParameterError, match="balanced sampling needs one class per sample"):
        plan.replace(sampling="balanced")


# ---- overrides and validation ---------------------------------------------------------------------------------------
def test_overrides(busi):
    plan = plan_classification(busi, minutes=10, overrides={
        "model_width": 16, "input_size": (128, 128), "loss": "ce", "augmentation.flip": 0.0, "dropout": 0.3,
        "model": "densenet121", "se": True, "n_folds": 3, "minutes": 20})
    assert plan.model_width == 16 and plan.input_size == (128, 128) and plan.model == "densenet121"
    assert plan.loss == "ce" and plan.class_weights is None and plan.augmentation.flip == 0.0
    assert plan.dropout == 0.3 and plan.se and plan.n_folds == 3 and plan.minutes == 20
    assert any("override" in n and "dropout" in n for n in plan.notes)
    balanced = plan_classification(busi, overrides={"sampling": "balanced"})
    assert balanced.sampling == "balanced" and balanced.loss == "ce"  # never weights and balanced sampling both
    for overrides, match in [
        ({"modle": "resnet18"}, "parameter 'modle'.*unknown plan field"),
        ({"augmentation.flipp": 0.5}, "augmentation.flipp"),
        ({"class_names": ("x", "y", "z")}, "measured from the dataset"),
        ({"model": "resnet50"}, "parameter 'model'.*unknown model"),
        ({"model": "slice_lstm"}, "3D inputs only"),
        ({"batch_size": 0}, "parameter 'batch_size'"),
        ({"learning_rate": -1.0}, "parameter 'learning_rate'"),
        ({"loss": "bce"}, "parameter 'loss'.*ce \\| weighted_ce"),
        ({"class_weights": (1.0, 2.0, 3.0)}, "takes no class weights"),  # with the weighted loss: accepted below
        ({"input_size": (64, 64, 64)}, "input size does not match dims"),
        ({"resize": "stretch"}, "parameter 'resize'"),
    ]:
        if overrides == {"class_weights": (1.0, 2.0, 3.0)}:
            assert plan_classification(busi, overrides=overrides).class_weights == (1.0, 2.0, 3.0)
            overrides = {"class_weights": (1.0, 2.0, 3.0), "loss": "ce"}
        with pytest.raises(InvalidParameterError, match=match):
            plan_classification(busi, overrides=overrides)
    with pytest.raises(InvalidParameterError, match="budgets must be positive"):
        plan_classification(busi, minutes=0)


def test_json_errors(tmp_path):
    plan = _small_plan()
    data = plan.to_dict()
    assert ClassifyPlan.from_dict(data) == plan
    with pytest.raises(InvalidParameterError, match="unknown classify plan fields.*colour"):
        ClassifyPlan.from_dict({**data, "colour": 1})
    with pytest.raises(InvalidParameterError, match="newer medimg"):
        ClassifyPlan.from_dict({**data, "schema_version": CLASSIFY_SCHEMA_VERSION + 1})
    with pytest.raises(InvalidParameterError, match="no schema version"):
        ClassifyPlan.from_dict({k: v for k, v in data.items() if k != "schema_version"})
    with pytest.raises(InvalidParameterError, match="fields are missing.*input_size"):
        ClassifyPlan.from_dict({k: v for k, v in data.items() if k != "input_size"})
    with pytest.raises(InvalidParameterError, match="parameter 'batch_size'.*'32'"):
        ClassifyPlan.from_dict({**data, "batch_size": "32"})
    with pytest.raises(InvalidParameterError, match="parameter 'se'"):
        ClassifyPlan.from_dict({**data, "se": "yes"})
    with pytest.raises(InvalidParameterError, match="parameter 'stem'.*small \\| imagenet"):
        ClassifyPlan.from_dict({**data, "stem": "tiny"})
    with pytest.raises(InvalidParameterError, match="unknown augmentation fields"):
        ClassifyPlan.from_dict({**data, "augmentation": {"spin": 1.0}})
    with pytest.raises(InvalidParameterError, match="needs class weights"):
        ClassifyPlan.from_dict({**data, "loss": "weighted_ce"})
    with pytest.raises(InvalidParameterError, match="two classes make a binary task"):
        _small_plan(class_names=("a", "b"))
    with pytest.raises(InvalidParameterError, match="rgb normalisation needs per-channel statistics"):
        _small_plan(normalization="rgb")
    with pytest.raises(InvalidParameterError, match="not valid JSON"):
        ClassifyPlan.from_json("{")
    inf = _small_plan(imbalance_ratio=math.inf)
    assert ClassifyPlan.from_json(inf.to_json()) == inf and json.loads(inf.to_json())["imbalance_ratio"] == "inf"
    assert isinstance(plan.augmentation, AugSpec)
    assert plan.replace(loss="weighted_ce", class_weights=[1, 2, 3]).class_weights == (1.0, 2.0, 3.0)


# ---- preprocessing ------------------------------------------------------------------------------------------------
def test_preprocess_normalisations_and_crop_pad():
    arr = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30)
    arr[0, 0, 0] = 1e6  # an outlier
    for norm, check in [
        ("minmax", lambda x: float(x.min()) == 0.0 and float(x.max()) <= 1.0),
        ("percentile", lambda x: float(x.min()) == 0.0 and float(x.max()) == 1.0 and float(np.median(x)) > 0.3),
        ("zscore", lambda x: abs(float(x.mean())) < 1e-3),
    ]:
        out = preprocess_sample(arr, _small_plan(normalization=norm, input_size=(20, 30)))
        assert out.shape == (1, 20, 30) and check(out), norm
    small = np.ones((1, 10, 40), np.float32)
    small[0, :, 15:25] = 5.0
    out = preprocess_sample(small, _small_plan(resize="crop_pad", normalization="minmax", input_size=(16, 12)))
    assert out.shape == (1, 16, 12)
    assert np.all(out[0, :3] == 0.0) and np.all(out[0, 13:] == 0.0)  # padded with the minimum
    assert np.all(out[0, 3:13, 1:11] == 1.0)  # the centre kept
    vol = np.random.default_rng(0).random((1, 10, 40, 40)).astype(np.float32)
    plan3 = _small_plan(dims=3, input_size=(8, 16, 16))
    assert preprocess_sample(vol, plan3).shape == (1, 8, 16, 16)
    assert preprocess_sample(vol[0], plan3).shape == (1, 8, 16, 16)  # no channel axis: one channel
    colour = np.random.default_rng(1).random((3, 20, 30)).astype(np.float32)
    assert preprocess_sample(colour, _small_plan(input_size=(20, 30))).shape == (1, 20, 30)  # luma
    rgb_plan = _small_plan(in_channels=3, normalization="rgb", channel_mean=(0.5, 0.5, 0.5),
                           channel_std=(0.25, 0.25, 0.25), input_size=(20, 30))
    grey = np.full((1, 20, 30), 255.0, np.float32)
    assert np.allclose(preprocess_sample(grey, rgb_plan), 2.0)  # (1 - 0.5) / 0.25 on each channel
    with pytest.raises(InvalidParameterError, match="wrong number of axes"):
        preprocess_sample(vol, _small_plan())
    with pytest.raises(InvalidParameterError, match="channel count does not match"):
        preprocess_sample(np.zeros((5, 20, 30), np.float32), _small_plan())
    bad = arr.copy()
    bad[0, 1, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="NaN/Inf"):
        preprocess_sample(bad, _small_plan())


def test_cost_model():
    assert estimate_gflops("resnet18", 2, (224, 224)) == pytest.approx(1.82)
    assert estimate_gflops("resnet18", 2, (112, 112), width=32) == pytest.approx(1.82 / 16)
    assert estimate_gflops("resnet18", 2, (28, 28), stem="small") == pytest.approx(1.82 / 64 * 16)
    assert estimate_gflops("mobilenetv3_small", 2, (224, 224)) == pytest.approx(0.06)  # standard width 16
    assert estimate_gflops("resnet18", 3, (64, 64, 64)) > estimate_gflops("resnet18_acs", 3, (64, 64, 64))
    assert estimate_memory_gb("resnet18", 2, (224, 224), batch_size=32) > estimate_memory_gb(
        "resnet18", 2, (224, 224), batch_size=8)
    with pytest.raises(InvalidParameterError, match="unknown model"):
        estimate_gflops("alexnet", 2, (224, 224))


def test_multilabel_label_without_negatives(tmp_path):
    for k in range(4):
        _png(tmp_path / f"{k}.png", np.full((8, 8), k, np.uint8))
    (tmp_path / "m.csv").write_text("path,x,y\n" + "\n".join(f"{k}.png,1,{k % 2}" for k in range(4)) + "\n")
    with pytest.raises(InvalidParameterError, match="positive in every sample.*x"):
        plan_classification(open_classification_dataset(tmp_path / "m.csv"))


def test_preprocess_accepts_image_voxels(busi):
    plan = _small_plan(input_size=(64, 64))
    image = busi.load_image(0)  # (1, 1, 256, 256)
    assert np.array_equal(preprocess_sample(image.voxels, plan), preprocess_sample(busi.load(0), plan))


def test_network_kwargs_build_a_classifier_spec():
    spec_module = pytest.importorskip("medimg.models.classifier_spec")
    plan = _small_plan(dims=3, input_size=(28, 28, 28), model="resnet18_25d", stem="small", model_width=16,
                       dropout=0.2, se=True)
    spec = spec_module.ClassifierSpec(**plan.network_kwargs())
    assert (spec.name, spec.dims, spec.n_classes, spec.width, spec.stem, spec.slices) == (
        "resnet18_25d", 3, 3, 16, "small", 28)
    assert spec.se and spec.dropout == 0.2 and spec_module.STEMS == ("small", "imagenet")


def test_shipped_adrenal_plan_round_trips_unchanged():
    """The shipped zoo model's plan.json reads into a ClassifyPlan and writes back to the same JSON, and the task
    registry knows the folder as a classification model by its plan's task field."""
    import json

    from medimg.tasks.registry import task_of_plan
    from medimg.zoo import resolve_model

    path = resolve_model("adrenalmnist3d") / "plan.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    plan = ClassifyPlan.load(path)
    assert plan.to_dict() == data
    assert json.loads(ClassifyPlan.from_json(plan.to_json()).to_json()) == data
    assert task_of_plan(data).name == "classify" and plan.TASK == "classify"
    assert task_of_plan({k: v for k, v in data.items() if k != "task"}).name == "classify"  # legacy: input_size


def test_replace_drops_class_weights_with_an_unweighted_loss():
    plan = _small_plan().replace(loss="weighted_ce", class_weights=(1.0, 2.0, 3.0))
    assert plan.class_weights == (1.0, 2.0, 3.0)
    assert plan.replace(loss="ce").class_weights is None
    with pytest.raises(InvalidParameterError, match="augmentation.spin"):
        plan.replace(**{"augmentation.spin": 1.0})

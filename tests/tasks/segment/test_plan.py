"""Fingerprint, planner, SegmentPlan JSON round trip and the preprocessed cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medimg.core.errors import InvalidParameterError
from medimg.plans.fingerprint import Fingerprint, channel_modality, compute_fingerprint
from medimg.tasks.segment.data import SegDataset
from medimg.tasks.segment.plan import SCHEMA_VERSION, NormSpec, SegmentPlan
from medimg.tasks.segment.planner import plan_segmentation
from medimg.tasks.segment.preprocess import PreprocessedCache, preprocess_case
from medimg.testing import require_data

from .test_data import _nnunet


@pytest.fixture(scope="module")
def hippo():
    ds = SegDataset.open(require_data("hippocampus"))
    return ds, compute_fingerprint(ds)


@pytest.fixture(scope="module")
def hippo_plan(hippo):
    return plan_segmentation(hippo[1], minutes=30.0)


def test_hippocampus_fingerprint(hippo):
    _, fp = hippo
    assert fp.n_cases == 208 and fp.n_sampled == 208 and fp.dims == 3
    assert fp.median_spacing == pytest.approx((1.0, 1.0, 1.0))
    assert all(abs(a - b) <= 3 for a, b in zip(fp.median_shape, (36, 50, 35)))  # nnU-Net reports 36x50x35
    assert fp.modalities == ("mr",)
    assert fp.label_values == (0, 1, 2) and sum(fp.label_frequencies) == pytest.approx(1.0)
    assert 0 < fp.label_frequencies[1] < 0.1 and fp.intensity[0]["p00_5"] <= fp.intensity[0]["p99_5"]
    again = Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict())))
    assert again == fp


def test_hippocampus_plan(hippo_plan):
    plan = hippo_plan
    assert plan.dims == 3 and plan.in_channels == 1 and plan.n_classes == 3
    assert plan.target_spacing == pytest.approx((1.0, 1.0, 1.0))
    assert plan.patch_size == (40, 56, 40)  # what nnU-Net's 3d_fullres uses for this set
    assert 48_000 <= math.prod(plan.patch_size) <= 96_000
    net = plan.network
    assert net["n_stages"] == 4 and net["pool_kernels"] == [[2, 2, 2]] * 3
    assert net["base_channels"] == 16 and net["max_channels"] == 256
    for axis, size in enumerate(plan.patch_size):
        assert size / 2 ** sum(k[axis] == 2 for k in net["pool_kernels"]) >= 4
    assert plan.batch_size == 2 and plan.iterations >= 1
    assert plan.normalization == (NormSpec("zscore"),) and plan.augmentation.bias_field_p == 0.1


def test_nuclei_2d_plan():
    ds = SegDataset.open(require_data("nuclei_dsb2018"), foreground_only=True)
    fp = compute_fingerprint(ds, max_cases=40)
    assert fp.dims == 2 and fp.n_sampled == 40 and fp.n_cases == 534 and fp.modalities == ("rgb",) * 3
    plan = plan_segmentation(fp)
    assert plan.dims == 2 and plan.in_channels == 3 and plan.n_classes == 2
    assert len(plan.patch_size) == 2 and math.prod(plan.patch_size) <= 256 * 256
    assert plan.network["base_channels"] == 32 and plan.network["max_channels"] == 320
    assert all(n.scheme == "rgb" for n in plan.normalization)
    assert 1 <= plan.batch_size <= 8
    image, label = ds.load(ds.cases[0])
    img, lab, props = preprocess_case(image, label, plan)
    assert img.shape == (3, *lab.shape) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert set(np.unique(lab).tolist()) <= {0, 1} and props["class_locations"]["1"]


def test_anisotropic_ct_mr_toy(tmp_path):
    ds = SegDataset.open(_nnunet(tmp_path / "ds"))
    fp = compute_fingerprint(ds)
    assert fp.modalities == ("ct", "mr")
    plan = plan_segmentation(fp, overrides={"network.base_channels": 8})
    assert plan.target_spacing == pytest.approx((0.8, 0.8, 2.5))
    first = plan.network["pool_kernels"][0]
    assert first[0] == 1 and first[1:] == [2, 2]  # the 2.5 mm axis (z) waits for the others
    ct, mr = plan.normalization
    assert ct.scheme == "ct" and ct.clip[0] < ct.mean < ct.clip[1] and ct.std > 0
    assert mr.scheme == "zscore" and plan.network["base_channels"] == 8


def test_channel_modality():
    assert [channel_modality(n) for n in ("CT", "MRI", "T1w", "FLAIR", "ADC", "US", "rgb")] == \
        ["ct", "mr", "mr", "mr", "mr", "other", "rgb"]


def test_plan_json_round_trip_and_file(hippo_plan, tmp_path):
    text = hippo_plan.to_json()
    assert SegmentPlan.from_json(text) == hippo_plan
    path = hippo_plan.save(tmp_path / "model" / "plan.json")
    assert SegmentPlan.load(path) == hippo_plan
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION


def test_plan_overrides(hippo, hippo_plan):
    p = hippo_plan.replace(**{"network.base_channels": 32, "augmentation.flip": 0.0, "learning_rate": 0.01})
    assert p.network["base_channels"] == 32 and p.augmentation.flip == 0.0 and p.learning_rate == 0.01
    assert hippo_plan.network["base_channels"] == 16  # the original is untouched
    with pytest.raises(InvalidParameterError, match="unknown plan field"):
        hippo_plan.replace(learnin_rate=1.0)
    with pytest.raises(InvalidParameterError, match="flip"):
        hippo_plan.replace(**{"augmentation.flip": 2.0})
    with pytest.raises(InvalidParameterError, match="not divisible"):
        hippo_plan.replace(patch_size=(41, 56, 40))
    planned = plan_segmentation(hippo[1], overrides={"patch_size": (32, 48, 32), "batch_size": 4,
                                                     "optimizer": "sgd"})
    assert planned.patch_size == (32, 48, 32) and planned.batch_size == 4 and planned.optimizer == "sgd"
    short = plan_segmentation(hippo[1], minutes=1.0, iterations_per_minute=20.0)
    assert short.iterations == 20 and short.fingerprint_summary["assumptions"]["measured_rate"]


def test_plan_schema_version_errors(hippo_plan):
    data = hippo_plan.to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(InvalidParameterError, match="newer medimg"):
        SegmentPlan.from_json(json.dumps(data))
    del data["schema_version"]
    with pytest.raises(InvalidParameterError, match="schema version"):
        SegmentPlan.from_json(json.dumps(data))
    data = hippo_plan.to_dict()
    data["surprise"] = 1
    with pytest.raises(InvalidParameterError, match="unknown segment plan fields"):
        SegmentPlan.from_json(json.dumps(data))


def test_preprocess_case_resamples_to_plan_spacing(tmp_path):
    ds = SegDataset.open(_nnunet(tmp_path / "ds", labels={"background": 0, "organ": 3}))
    plan = plan_segmentation(compute_fingerprint(ds)).replace(target_spacing=(1.6, 1.6, 2.5))
    image, label = ds.load("case0")
    label = label.replace(voxels=np.where(label.voxels > 0, 3, 0).astype(np.uint8))
    img, lab, props = preprocess_case(image, label, plan)
    assert img.shape == (2, 6, 5, 6) and lab.shape == (6, 5, 6)  # (Z, Y, X) at 2.5 x 1.6 x 1.6 mm
    assert props["resampled_spacing"] == pytest.approx([1.6, 1.6, 2.5])
    assert lab.dtype == np.uint8 and set(np.unique(lab).tolist()) == {0, 1}
    bad = label.replace(voxels=np.full(label.voxels.shape, 5, np.uint8))
    with pytest.raises(InvalidParameterError, match="label values"):
        preprocess_case(image, bad, plan)


def test_cache_second_get_is_a_memory_map_and_identical(hippo, hippo_plan, tmp_path):
    ds = hippo[0]
    cache = PreprocessedCache(tmp_path / "cache", hippo_plan, ds)
    seen = []
    built = cache.build(ds.cases[:3], progress=lambda n, total, case: seen.append((n, total)))
    assert built == ds.cases[:3] and seen[-1] == (3, 3)
    a_img, a_lab, a_props = cache.get(ds.cases[0])
    b_img, b_lab, b_props = cache.get(ds.cases[0])
    assert isinstance(a_img, np.memmap) and np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert a_props == b_props and a_img.dtype == np.float32 and a_lab.max() <= 2
    direct = preprocess_case(*ds.load(ds.cases[0]), hippo_plan)
    assert np.array_equal(direct[0], a_img) and np.array_equal(direct[1], a_lab)
    assert cache.build(ds.cases[:3]) == []
    other = PreprocessedCache(tmp_path / "cache", hippo_plan.replace(target_spacing=(1.5, 1.5, 1.5)), ds)
    assert other.dir != cache.dir  # preprocessing fields change the key
    same = PreprocessedCache(tmp_path / "cache", hippo_plan.replace(learning_rate=0.1), ds)
    assert same.dir == cache.dir  # training-only fields do not

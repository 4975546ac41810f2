"""Analysis pipelines on real data: CT body/lungs against TotalSegmentator, nuclei counts, fetal head HC."""

import csv
import logging

import numpy as np
import pytest

from medimg.core import InvalidParameterError
from medimg.io import read
from medimg.pipelines import PIPELINES, choose_pipeline, run_pipeline
from medimg.pipelines.fetal_head import ellipse_circumference_mm, fit_head_ellipse
from medimg.testing import phantom, require_data

REF = ("ct_mr_samples_totalsegmentator", "tests", "reference_files")
TOTALSEG_LUNG_LABELS = [10, 11, 12, 13, 14]  # TotalSegmentator v2 lung lobes


def test_registry_and_choice():
    assert set(PIPELINES) == {"ct_body", "hippocampus", "nuclei", "fetal_head"}
    assert choose_pipeline(phantom())[0] == "ct_body"  # HU-like values
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    from medimg.core import Image

    with pytest.raises(InvalidParameterError, match="no automatic pipeline"):  # noise is not microscopy (issue 12)
        choose_pipeline(Image.from_array(rgb, channel_axis=-1))
    mr = phantom().replace(voxels=np.abs(phantom().voxels)).with_metadata(modality="MR")
    with pytest.raises(InvalidParameterError, match="--pipeline"):
        choose_pipeline(mr)
    with pytest.raises(InvalidParameterError, match="unknown pipeline"):
        run_pipeline(phantom(), "nope")


def test_ct_body_lungs_match_totalsegmentator():
    """Our HU+morphology lungs against TotalSegmentator's lung lobes (a model's output, not manual truth)."""
    ct = read(require_data(*REF, "example_ct_sm.nii.gz"))
    seg = read(require_data(*REF, "example_seg.nii.gz"), kind="label")
    ct.check_same_grid(seg)
    result = run_pipeline(ct)
    assert result.parameters["pipeline_choice"].endswith("look like HU")
    tissues = result.masks["tissues"].voxels[0]
    ref = np.isin(seg.voxels[0], TOTALSEG_LUNG_LABELS)
    lung = tissues == 2
    dice = 2 * (lung & ref).sum() / (lung.sum() + ref.sum())
    assert dice > 0.93, dice
    ml = ct.voxel_volume_mm3 / 1000
    assert result.summary["lung_volume_ml"] == pytest.approx(ref.sum() * ml, rel=0.05)
    # every TotalSegmentator structure lies inside our body mask (it is the whole body)
    assert ((seg.voxels[0] > 0) & (tissues == 0)).sum() / (seg.voxels[0] > 0).sum() < 0.01
    records = {r["structure"]: r for r in result.measurements}
    assert records["lung"]["volume_ml"] == pytest.approx(result.summary["lung_volume_ml"], abs=0.01)
    assert records["bone"]["mean_hu"] > 300


def test_ct_body_on_shipped_sample_is_consistent():
    from medimg.pipelines.demo import sample_path

    ct = read(sample_path())
    result = run_pipeline(ct)
    s = result.summary
    assert s["body_volume_ml"] > s["lung_volume_ml"] + s["gas_volume_ml"] + s["bone_volume_ml"]
    assert 2000 < s["body_volume_ml"] < 5000  # a 40 mm slab of an adult abdomen
    assert any("40 mm" in n for n in result.notes)
    assert len(result.figures) >= 2


def _fluorescence_cases(n):
    root = require_data("nuclei_dsb2018")
    out = []
    for img_path in sorted((root / "images").glob("*.png")):
        img = read(img_path)
        if img.spatial_shape[1] <= 360 and float(np.median(img.voxels)) < 30:
            out.append((img, read(root / "labels" / img_path.name, kind="label")))
        if len(out) == n:
            break
    return out


def test_nuclei_counts_close_to_truth():
    logging.disable(logging.WARNING)
    try:
        cases = _fluorescence_cases(6)
    finally:
        logging.disable(logging.NOTSET)
    errors, dices = [], []
    for img, lab in cases:
        result = run_pipeline(img, "nuclei")
        pred = result.masks["nuclei"].voxels[0, 0]
        truth = lab.voxels[0, 0]
        n_true = len(np.unique(truth)) - 1
        errors.append(abs(result.summary["count"] - n_true) / max(n_true, 1))
        dices.append(2 * ((pred > 0) & (truth > 0)).sum() / ((pred > 0).sum() + (truth > 0).sum()))
        assert result.summary["count"] == len(result.measurements)
    assert np.mean(dices) > 0.85, dices
    assert np.median(errors) < 0.25, errors


def test_fetal_head_circumference_on_unseen_fetuses():
    """HC18 images of fetuses the parameters were not chosen on (000-079 were used): a classical baseline."""
    root = require_data("fetal_head_hc18")
    rows = list(csv.DictReader(open(root / "pixel_size_and_HC.csv")))
    held_out = [r for r in rows if int(r["filename"][:3]) >= 300][:12]
    errors = []
    for r in held_out:
        frame = read(root / "images" / r["filename"], spacing=(1.0, 1.0)).voxels[0, 0].astype(np.float32)
        fit = fit_head_ellipse(frame)
        if fit is None:
            errors.append(np.inf)
            continue
        ps = float(r["pixel size(mm)"])
        errors.append(abs(ellipse_circumference_mm(fit[1], (ps, ps)) - float(r["head circumference (mm)"])))
    # a weak baseline: most heads within 30 % of the reference circumference
    refs = np.array([float(r["head circumference (mm)"]) for r in held_out])
    rel = np.array(errors) / refs
    assert np.median(rel) < 0.3, np.round(errors, 1)


def test_fetal_head_pipeline_reports_fallback_spacing():
    root = require_data("fetal_head_hc18")
    logging.disable(logging.WARNING)
    try:
        img = read(root / "images" / "000_HC.png")
    finally:
        logging.disable(logging.NOTSET)
    assert choose_pipeline(img)[0] == "fetal_head"
    result = run_pipeline(img)
    assert any("1 mm per pixel" in n for n in result.notes)
    assert result.masks["head"].voxels.max() == 1

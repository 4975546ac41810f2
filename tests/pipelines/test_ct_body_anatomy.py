"""ct_body's anatomical lung rule, gas inside the body only, and one body volume, on real CTs.

References are TotalSegmentator's label maps for the same scans (a model's output, not manual truth; ids of
TotalSegmentator v2 "total": lung lobes 10-14, stomach 6, small bowel 18, duodenum 19, colon 20).
"""

import numpy as np
import pytest
from scipy import ndimage

from medimg.io import read
from medimg.pipelines import run_pipeline
from medimg.pipelines.demo import ct_volume_lines, sample_path
from medimg.preprocess.spatial import resample_to
from medimg.testing import require_data

REF = ("ct_mr_samples_totalsegmentator", "tests", "reference_files")
TS_LUNG = [10, 11, 12, 13, 14]
TS_GUT = [6, 18, 19, 20]


def _on_grid(seg, ct):
    try:
        ct.check_same_grid(seg)
        return seg.voxels[0]
    except Exception:  # noqa: BLE001 - the reference NIfTI is LAS, the DICOM series LPS
        return resample_to(seg, ct, interpolation="nearest").voxels[0]


@pytest.fixture(scope="module")
def sample():
    ct = read(sample_path())
    return ct, run_pipeline(ct)


@pytest.fixture(scope="module")
def abdomen_with_lung_bases():
    ct = read(require_data(*REF, "example_ct.nii.gz"))
    seg = read(require_data(*REF, "example_seg_fast_force_split.nii.gz"), kind="label")
    return ct, _on_grid(seg, ct), run_pipeline(ct)


def test_shipped_sample_has_no_lung(sample):
    """The demo slab is upper abdomen: TotalSegmentator finds no lung; the old rule called stomach/colon gas lung."""
    _, result = sample
    s = result.summary
    assert s["lung_volume_ml"] < 1.0 and s["lung_parts"] == 0
    assert not (result.masks["tissues"].voxels[0] == 2).any()
    assert any(n.startswith("No lung") for n in result.notes)
    lines = ct_volume_lines(s)
    assert any(line.startswith("lung:") and "none found" in line for line in lines)
    assert not any("lung" in line and "mL" in line.split("lung", 1)[1] for line in lines)


def test_shipped_sample_gas_is_inside_the_body_and_in_the_gut(sample):
    ct, result = sample
    tissues = result.masks["tissues"].voxels[0]
    gas = tissues == 3
    assert gas.any()
    # every gas voxel is covered by more than 5 mm of body towards the air outside (the arm-torso gap is not)
    filled = np.stack([ndimage.binary_fill_holes(t > 0) for t in tissues])
    sy, sx = ct.geometry.spacing_zyx[1:]
    depth = np.stack([ndimage.distance_transform_edt(f, sampling=(sy, sx)) for f in filled])
    assert depth[gas].min() > 5.0
    seg = _on_grid(read(require_data(*REF, "example_seg_dicom.nii.gz"), kind="label"), ct)
    assert not np.isin(seg, TS_LUNG).any()
    assert np.isin(seg[gas], TS_GUT).mean() > 0.9  # measured 0.94; the rest is partial volume at the gut's wall
    assert result.summary["gas_volume_ml"] > 20  # stomach and colon gas (TotalSegmentator: in 141 + 20 mL of gut)
    # both arms belong to the body (the left one does not touch the torso; the old mask left it out)
    assert ((seg > 0) & (tissues == 0)).sum() / (seg > 0).sum() < 0.001


def test_summary_and_table_give_one_body_volume(sample):
    _, result = sample
    rows = {r["structure"]: r for r in result.measurements}
    s = result.summary
    assert s["body_volume_ml"] == round(rows["body"]["volume_ml"], 2)
    parts = sum(rows[k]["volume_ml"] for k in ("soft tissue", "lung", "gas", "bone"))
    assert parts == pytest.approx(rows["body"]["volume_ml"], abs=0.01)
    assert s["soft_tissue_volume_ml"] == round(rows["soft tissue"]["volume_ml"], 2)
    voxel_ml = result.masks["tissues"].voxel_volume_mm3 / 1000
    assert s["body_volume_ml"] == round(float((result.masks["tissues"].voxels[0] > 0).sum() * voxel_ml), 2)


def test_lung_bases_match_totalsegmentator(abdomen_with_lung_bases):
    """The 112-slice abdomen holds both lung bases (TotalSegmentator: 111 mL); Dice measured 0.956."""
    ct, seg, result = abdomen_with_lung_bases
    tissues = result.masks["tissues"].voxels[0]
    ref, lung = np.isin(seg, TS_LUNG), tissues == 2
    dice = 2 * (lung & ref).sum() / (lung.sum() + ref.sum())
    assert dice >= 0.93, dice
    ml = ct.voxel_volume_mm3 / 1000
    assert result.summary["lung_volume_ml"] == pytest.approx(ref.sum() * ml, rel=0.1)
    assert result.summary["lung_parts"] == 2
    gas = tissues == 3
    assert np.isin(seg[gas], TS_GUT).mean() > 0.9  # measured 0.96
    assert ref[gas].mean() < 0.01
    # every TotalSegmentator structure lies inside the body
    assert ((seg > 0) & (tissues == 0)).sum() / (seg > 0).sum() < 0.01
    rows = {r["structure"]: r for r in result.measurements}
    assert result.summary["body_volume_ml"] == round(rows["body"]["volume_ml"], 2)

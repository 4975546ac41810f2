"""measure_labels / instance_summary / CSV-JSON output, bad inputs, intensity statistics in HU."""

import csv
import json

import numpy as np
import pytest

from medimg.core import GeometryMismatchError, Image, InvalidParameterError
from medimg.io import read
from medimg.measure import instance_summary, intensity_stats, measure_labels, to_csv, to_json
from medimg.testing import label_phantom, phantom, require_data

REF = ("ct_mr_samples_totalsegmentator", "tests", "reference_files")


def test_records_have_units_in_keys_and_hu_for_ct():
    recs = measure_labels(label_phantom(), image=phantom(), label_names={1: "shell", 2: "core"})
    assert [(r["label"], r["name"]) for r in recs] == [(1, "shell"), (2, "core")]
    for key in ("volume_ml", "surface_area_mm2", "centroid_x_mm", "longest_diameter_mm", "short_axis_diameter_mm",
                "max_cross_section_area_mm2", "equivalent_sphere_diameter_mm", "mean_hu", "p95_hu"):
        assert key in recs[0]
    assert recs[1]["mean_hu"] > 200 > recs[0]["mean_hu"]


def test_intensity_stats_match_numpy_on_real_ct():
    ct = read(require_data(*REF, "example_ct_sm.nii.gz")).with_metadata(modality="CT")
    seg = read(require_data(*REF, "example_seg.nii.gz"), kind="label")
    recs = {r["label"]: r for r in measure_labels(seg, image=ct)}
    values = ct.array[seg.array == 5].astype(float)
    assert recs[5]["mean_hu"] == pytest.approx(values.mean())
    assert recs[5]["median_hu"] == pytest.approx(np.median(values))
    assert recs[5]["p5_hu"] == pytest.approx(np.percentile(values, 5))


def test_non_ct_uses_intensity_suffix():
    img = Image.from_array(np.arange(8, dtype=np.float32).reshape(2, 2, 2))
    stats = intensity_stats(img, img.array > 3)
    assert stats["mean_intensity"] == pytest.approx(5.5) and "mean_hu" not in stats


def test_2d_records_and_instances():
    lab = np.zeros((40, 60), np.uint8)
    lab[5:15, 5:25] = 1
    lab[20:30, 30:40] = 1  # a second component of label 1
    lab[32:38, 2:8] = 2
    labels = Image.from_array(lab, spacing=(0.5, 0.25), kind="label")
    recs = measure_labels(labels)
    assert recs[0]["area_mm2"] == pytest.approx((200 + 100) * 0.125)
    assert "ellipse_circumference_mm" in recs[0] and "volume_ml" not in recs[0]
    inst = measure_labels(labels, instances=True)
    assert [(r["label"], r["instance"], r["voxel_count"]) for r in inst] == [(1, 1, 200), (1, 2, 100), (2, 1, 36)]
    s = instance_summary(labels, split_components=True)
    assert s["count"] == 3 and s["size_unit"] == "mm2" and s["size_max"] == pytest.approx(25.0)
    assert sum(s["histogram"]["counts"]) == 3
    assert instance_summary(labels)["count"] == 2


def test_empty_label_gets_zero_record_without_nan():
    recs = measure_labels(label_phantom(), image=phantom(), label_names={1: "shell", 2: "core", 7: "absent"})
    empty = recs[-1]
    assert empty["label"] == 7 and empty["voxel_count"] == 0 and empty["volume_ml"] == 0.0
    assert empty["centroid_x_mm"] is None and empty["mean_hu"] is None
    json.dumps(recs, allow_nan=False)  # no NaN anywhere


def test_all_background_gives_no_records():
    labels = Image.from_array(np.zeros((3, 4, 5), np.uint8), kind="label")
    assert measure_labels(labels) == []
    assert instance_summary(labels)["count"] == 0


def test_mismatched_grid_raises_with_fix():
    labels = label_phantom()
    image = phantom(spacing=(1.0, 1.0, 1.0))
    with pytest.raises(GeometryMismatchError, match="Fix: resample"):
        measure_labels(labels, image=image)


def test_float_with_fractions_is_not_a_label_map():
    probs = Image.from_array(np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 3, 4),
                             metadata={"source_path": "probs.nii.gz"})
    with pytest.raises(InvalidParameterError, match="expected integer labels") as info:
        measure_labels(probs)
    assert "probs.nii.gz" in str(info.value) and "labels" in str(info.value)
    whole = Image.from_array(np.array([[0.0, 1.0], [2.0, 2.0]], np.float32))
    assert [r["label"] for r in measure_labels(whole)] == [1, 2]


def test_csv_and_json_round_trip(tmp_path):
    recs = measure_labels(label_phantom(), image=phantom(), label_names={1: "shell", 9: "none"})
    to_csv(recs, tmp_path / "m.csv")
    to_json({"records": recs}, tmp_path / "m.json")
    rows = list(csv.DictReader(open(tmp_path / "m.csv", newline="")))
    assert [r["label"] for r in rows] == ["1", "2", "9"]
    assert float(rows[0]["volume_ml"]) == pytest.approx(recs[0]["volume_ml"])
    assert rows[2]["centroid_x_mm"] == ""
    assert json.loads((tmp_path / "m.json").read_text())["records"][0]["label"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "m.json"]  # no temporary files left

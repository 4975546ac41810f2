"""`medimg evaluate --task ...`: instance, classification, detection, quality and registration on real data."""

import csv
import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medimg.cli import main as cli_main
from medimg.io import read, write
from medimg.metrics import (
    aggregated_jaccard_index,
    dsb_average_precision,
    instance_f1,
    jacobian_statistics,
    mean_average_precision,
)
from medimg.testing import require_data


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def _rows(path):
    return list(csv.DictReader(path.open()))


def _write_csv(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------- instance


@pytest.mark.realdata
def test_instance_dsb_nuclei_vs_eroded(tmp_path, capsys):
    src = require_data("nuclei_dsb2018", "labels")
    files = sorted(src.glob("*.png"))[:3]
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    expected = {}
    for k, f in enumerate(files):
        shutil.copy(f, gt_dir / f.name)
        gt = read(f, kind="label")
        lab = np.asarray(gt.voxels[0, 0])
        # erode every instance by one pixel (a pixel stays when its 3x3 neighbourhood holds one id)
        keep = ndimage.minimum_filter(lab, 3) == ndimage.maximum_filter(lab, 3)
        eroded = np.where(keep, lab, 0).astype(lab.dtype)
        if k < 2:  # the third case has no prediction
            write(gt.replace(voxels=eroded[None, None]), pred_dir / f.name)
            f1 = instance_f1(eroded, lab, iou_thresholds=(0.5, 0.75))
            expected[f.stem] = (f1, dsb_average_precision(eroded, lab), aggregated_jaccard_index(eroded, lab),
                                int(np.unique(lab[lab > 0]).size))
    out = tmp_path / "out"
    code = cli_main.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(out), "--task", "instance"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert files[2].stem in captured.err  # missing prediction listed
    rows = {r["case"]: r for r in _rows(out / "per_case.csv")}
    assert set(rows) == set(expected)
    for cid, (f1, ap, aji, n_gt) in expected.items():
        r = rows[cid]
        assert int(r["n_gt"]) == n_gt
        for t in (0.5, 0.75):
            assert float(r[f"f1@{t:g}"]) == pytest.approx(f1[t]["f1"], rel=1e-5)
            assert int(r[f"tp@{t:g}"]) == f1[t]["tp"]
        assert float(r["dsb_ap"]) == pytest.approx(ap, rel=1e-5)
        assert float(r["aji"]) == pytest.approx(aji, rel=1e-5)
        assert 0 < aji < 1
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]["f1@0.5"]
    assert summary["task"] == "instance" and summary["iou_thresholds"] == [0.5, 0.75]
    assert m["n"] == 2 and m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert m["mean"] == pytest.approx(np.mean([e[0][0.5]["f1"] for e in expected.values()]))
    assert summary["missing_predictions"] == [files[2].stem]

    out2 = tmp_path / "out2"
    assert cli_main.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(out2), "--task", "instance",
                          "--iou", "0.3", "-q"]) == 0
    assert "f1@0.3" in _rows(out2 / "per_case.csv")[0]


# ---------------------------------------------------------------------------------------------- classification


def test_classification_binary_auc_equals_sklearn(tmp_path, capsys):
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

    rng = np.random.default_rng(7)
    n = 120
    y = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    cases = [f"case_{i:03d}" for i in range(n)]
    order = rng.permutation(n)  # the prediction rows come in another order
    pred = _write_csv(tmp_path / "pred.csv", ["case", "score"], [[cases[i], f"{score[i]:.17g}"] for i in order])
    gt = _write_csv(tmp_path / "gt.csv", ["case", "label"], [[c, int(v)] for c, v in zip(cases, y)])
    out = tmp_path / "out"
    assert cli_main.main(["evaluate", str(pred), str(gt), "-o", str(out), "--task", "classification",
                          "--threshold", "0.6", "--bins", "10"]) == 0
    assert "auc" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    call = (score >= 0.6).astype(int)
    assert s["accuracy"] == pytest.approx(np.mean(call == y))
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, call))
    assert s["confusion_matrix"]["matrix"] == confusion_matrix(y, call).tolist()
    tn, fp, fn, tp = confusion_matrix(y, call).ravel()
    assert s["at_threshold"]["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert s["at_threshold"]["specificity"] == pytest.approx(tn / (tn + fp))
    assert 0 <= s["ece"] <= 1 and s["n_bins"] == 10 and s["n_cases"] == n
    rows = _rows(out / "per_case.csv")
    assert len(rows) == n and set(rows[0]) == {"case", "label", "predicted", "correct", "score"}


def test_classification_multiclass_macro_auc(tmp_path):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    n, names = 90, ["benign", "malignant", "normal"]
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 1.2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = _write_csv(tmp_path / "pred.csv", ["case", *[f"score_{c}" for c in names]],
                      [[f"c{i}", *[f"{v:.17g}" for v in p[i]]] for i in range(n)])
    gt = _write_csv(tmp_path / "gt.csv", ["case", "label"], [[f"c{i}", names[y[i]]] for i in range(n)])
    out = tmp_path / "out"
    assert cli_main.main(["evaluate", str(pred), str(gt), "-o", str(out), "--task", "classification", "-q"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert s["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    assert s["classes"] == names and not s["binary"] and "at_threshold" not in s


def test_classification_errors(tmp_path, capsys):
    pred = _write_csv(tmp_path / "pred.csv", ["case", "score"], [["a", 0.2], ["b", 0.9]])
    bad_gt = _write_csv(tmp_path / "gt_nolabel.csv", ["case", "diagnosis"], [["a", 0], ["b", 1]])
    out = tmp_path / "out"
    assert cli_main.main(["evaluate", str(pred), str(bad_gt), "-o", str(out), "--task", "classification"]) == 2
    line = _err_line(capsys)
    assert "gt_nolabel.csv" in line and "'label'" in line
    other = _write_csv(tmp_path / "gt_other.csv", ["case", "label"], [["x", 0], ["y", 1]])
    assert cli_main.main(["evaluate", str(pred), str(other), "-o", str(out), "--task", "classification"]) == 2
    assert "no case id" in _err_line(capsys)
    no_score = _write_csv(tmp_path / "pred_noscore.csv", ["case", "prob"], [["a", 0.2]])
    assert cli_main.main(["evaluate", str(no_score), str(other), "-o", str(out), "--task", "classification"]) == 2
    assert "pred_noscore.csv" in _err_line(capsys)
    # an option of another task is refused with one line
    assert cli_main.main(["evaluate", str(pred), str(other), "-o", str(out), "--task", "classification",
                          "--iou", "0.5"]) == 2
    assert "--iou" in _err_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- detection


def _voc_boxes(path):
    root = ET.parse(path).getroot()
    return [(o.findtext("name"), [float(o.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")])
            for o in root.iter("object")]


@pytest.mark.realdata
def test_detection_bccd_voc_vs_jittered_json(tmp_path, capsys):
    ann = require_data("blood_cells_bccd", "Annotations")
    files = sorted(ann.glob("*.xml"))[:12]
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    rng = np.random.default_rng(11)
    names = ["Platelets", "RBC", "WBC"]
    pb, ps, pl, gb, gl = [], [], [], [], []
    for f in files:
        shutil.copy(f, gt_dir / f.name)
        boxes = _voc_boxes(f)
        preds = []
        for lab, b in boxes:
            if rng.random() < 0.15:  # missed
                continue
            jb = (np.asarray(b) + rng.normal(0, 6, 4)).tolist()
            jb = [min(jb[0], jb[2]), min(jb[1], jb[3]), max(jb[0], jb[2]), max(jb[1], jb[3])]
            preds.append({"label": lab, "box": jb, "score": float(rng.uniform(0.3, 1))})
        for _ in range(2):  # false positives
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            preds.append({"label": "RBC", "box": [x, y, x + 80, y + 80], "score": float(rng.uniform(0, 0.7))})
        (pred_dir / f"{f.stem}.json").write_text(json.dumps(preds))
        pb.append(np.array([p["box"] for p in preds]).reshape(-1, 4))
        ps.append(np.array([p["score"] for p in preds]))
        pl.append(np.array([names.index(p["label"]) for p in preds]))
        gb.append(np.array([b for _, b in boxes]).reshape(-1, 4))
        gl.append(np.array([names.index(lab) for lab, _ in boxes]))
    expected = mean_average_precision(pb, ps, pl, gb, gl, iou_threshold=0.5)
    out = tmp_path / "out"
    code = cli_main.main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(out), "--task", "detection"])
    assert code == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["map"] == pytest.approx(expected["map"], abs=1e-12)
    assert s["ap"] == pytest.approx({names[c]: v for c, v in expected["ap"].items()}, abs=1e-12)
    assert 0.3 < s["map"] < 1
    assert s["froc"]["fp_rates"] == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert all(0 <= v <= 1 for v in s["froc"]["sensitivity_at"])
    rows = _rows(out / "per_image.csv")
    assert [r["image"] for r in rows] == [f.stem for f in files]
    assert sum(int(r["n_gt"]) for r in rows) == s["n_gt_boxes"] == sum(len(g) for g in gb)
    for r in rows:
        assert int(r["tp"]) + int(r["fn"]) == int(r["n_gt"]) and int(r["tp"]) + int(r["fp"]) == int(r["n_pred"])


def test_detection_json_without_score_is_an_error(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "img1.json").write_text(json.dumps([{"label": "RBC", "box": [0, 0, 10, 10]}]))
    (tmp_path / "p" / "img1.json").write_text(json.dumps([{"label": "RBC", "box": [0, 0, 10, 10]}]))
    out = tmp_path / "out"
    assert cli_main.main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "-o", str(out),
                          "--task", "detection"]) == 2
    line = _err_line(capsys)
    assert "img1.json" in line and "score" in line
    (tmp_path / "p" / "img1.json").unlink()
    (tmp_path / "p" / "other.json").write_text(json.dumps([{"label": "RBC", "box": [0, 0, 9, 9], "score": 1}]))
    assert cli_main.main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "-o", str(out),
                          "--task", "detection"]) == 2
    assert "no file stem" in _err_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- quality


@pytest.mark.realdata
def test_quality_ct_slice_psnr_equals_skimage(tmp_path, capsys):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ct = read(require_data("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct_sm.nii.gz"))
    ref = ct.replace(voxels=np.asarray(ct.voxels[:, 15:16]))
    arr = np.asarray(ref.voxels[0, 0], dtype=np.float64)
    noisy = (arr + np.random.default_rng(5).normal(0, 25, arr.shape)).astype(np.float32)
    write(ref, tmp_path / "ref.nii.gz")
    write(ref.replace(voxels=noisy[None, None]), tmp_path / "noisy.nii.gz")
    out = tmp_path / "out"
    code = cli_main.main(["evaluate", str(tmp_path / "noisy.nii.gz"), str(tmp_path / "ref.nii.gz"), "-o", str(out),
                          "--task", "quality"])
    assert code == 0, capsys.readouterr().err
    dr = arr.max() - arr.min()
    (row,) = _rows(out / "per_case.csv")
    expected = peak_signal_noise_ratio(arr, noisy.astype(np.float64), data_range=dr)
    assert float(row["psnr_db"]) == pytest.approx(expected, rel=1e-5)
    ss = structural_similarity(arr, noisy.astype(np.float64), data_range=dr, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False)
    assert float(row["ssim"]) == pytest.approx(ss, abs=1e-4)
    s = json.loads((out / "summary.json").read_text())
    assert s["metrics"]["psnr_db"]["mean"] == pytest.approx(expected, rel=1e-9)
    out2 = tmp_path / "out2"
    assert cli_main.main(["evaluate", str(tmp_path / "noisy.nii.gz"), str(tmp_path / "ref.nii.gz"), "-o",
                          str(out2), "--task", "quality", "--data-range", "4095", "-q"]) == 0
    (row2,) = _rows(out2 / "per_case.csv")
    assert float(row2["psnr_db"]) == pytest.approx(
        peak_signal_noise_ratio(arr, noisy.astype(np.float64), data_range=4095), rel=1e-5)


# ---------------------------------------------------------------------------------------------- registration


def _vector_field(u_xyz, spacing, path):
    img = sitk.GetImageFromArray(np.moveaxis(u_xyz, 0, -1), isVector=True)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


def test_registration_tre_and_smooth_field(tmp_path, capsys):
    rng = np.random.default_rng(2)
    shift = np.array([3.0, -4.0, 12.0])  # norm 13
    gt_rows, pred_rows = [], []
    for c in ("case_1", "case_2"):
        pts = rng.uniform(-50, 50, (5, 3))
        gt_rows += [[c, *p] for p in pts]
        pred_rows += [[c, *(p + shift)] for p in pts]
    gt = _write_csv(tmp_path / "fixed.csv", ["case", "x", "y", "z"], gt_rows)
    pred = _write_csv(tmp_path / "moved.csv", ["case", "x", "y", "z"], pred_rows)
    z, y, x = np.meshgrid(np.arange(10), np.arange(12), np.arange(14), indexing="ij")
    u = np.stack([0.8 * np.sin(x / 4.0), 0.5 * np.cos(y / 5.0), 0.6 * np.sin(z / 3.0 + x / 7.0)])  # smooth, mm
    spacing = (1.5, 1.5, 2.0)
    for name in ("field.mha", "field.nii.gz"):
        field = _vector_field(u, spacing, tmp_path / name)
        out = tmp_path / f"out_{name.split('.')[1]}"
        code = cli_main.main(["evaluate", str(pred), str(gt), "-o", str(out), "--task", "registration",
                              "--field", str(field)])
        assert code == 0, capsys.readouterr().err
        s = json.loads((out / "summary.json").read_text())
        assert s["landmarks"]["mean"] == pytest.approx(13.0) and s["landmarks"]["max"] == pytest.approx(13.0)
        assert s["metrics"]["tre_mean_mm"]["mean"] == pytest.approx(13.0) and s["n_landmarks"] == 10
        assert s["jacobian"]["folding_fraction"] == 0.0
        assert s["jacobian"]["mean"] == pytest.approx(jacobian_statistics(u, spacing_mm=spacing)["mean"], rel=1e-6)
        rows = _rows(out / "per_landmark.csv")
        assert len(rows) == 10 and all(float(r["tre_mm"]) == pytest.approx(13.0) for r in rows)
    # a field that folds is reported as such
    folding = _vector_field(np.stack([-3.0 * np.sin(x / 1.0), 0 * u[1], 0 * u[2]]), spacing, tmp_path / "fold.mha")
    out = tmp_path / "out_fold"
    assert cli_main.main(["evaluate", str(pred), str(gt), "-o", str(out), "--task", "registration",
                          "--field", str(folding), "-q"]) == 0
    assert json.loads((out / "summary.json").read_text())["jacobian"]["folding_fraction"] > 0


def test_registration_errors(tmp_path, capsys):
    gt = _write_csv(tmp_path / "fixed.csv", ["case", "x", "y", "z"], [["a", 0, 0, 0], ["a", 1, 1, 1]])
    pred = _write_csv(tmp_path / "moved.csv", ["case", "x", "y", "z"], [["a", 0, 0, 0]])
    out = tmp_path / "out"
    assert cli_main.main(["evaluate", str(pred), str(gt), "-o", str(out), "--task", "registration"]) == 2
    assert "landmark counts differ" in _err_line(capsys)
    other = _write_csv(tmp_path / "other.csv", ["case", "x", "y", "z"], [["b", 0, 0, 0]])
    assert cli_main.main(["evaluate", str(other), str(gt), "-o", str(out), "--task", "registration"]) == 2
    assert "no case id" in _err_line(capsys)
    scalar = tmp_path / "scalar.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32)), str(scalar))
    same = _write_csv(tmp_path / "same.csv", ["case", "x", "y", "z"], [["a", 0, 0, 0], ["a", 1, 1, 1]])
    assert cli_main.main(["evaluate", str(same), str(gt), "-o", str(out), "--task", "registration",
                          "--field", str(scalar)]) == 2
    assert "scalar.mha" in _err_line(capsys)
    assert not out.exists()

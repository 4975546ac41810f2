"""`medimg analyze IMAGE -o OUT --classifier MODEL`: the classification section of the report, the
``classification`` entry of measurements.json and the explanation files, with and without a segmentation pipeline
(tiny models trained in seconds on 12 BUSI images and 8 AdrenalMNIST3D volumes), and every misfit ending in one
line, exit code 2 and no output folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg.cli.main import main
from medimg.core.image import Image
from medimg.io import read, write
from medimg.tasks.classify.trainer import train
from medimg.testing import one_line_error, require_data
from medimg.train.run import TrainOptions

BUSI_IMAGE = ("breast_ultrasound_busi", "benign", "benign (1).png")


def _train(data: Path, out: Path, size: list[int]) -> Path:
    train(data, out, TrainOptions(
        fold=0, n_folds=2, iterations=2, seed=0, deterministic=True,
        overrides=(("input_size", size), ("model_width", 8), ("batch_size", 4))))
    return out


@pytest.fixture(scope="module")
def busi_model(tmp_path_factory) -> Path:
    """A 2D three-class model (benign, malignant, normal) from 4 BUSI images per class at 32 x 32."""
    root = require_data("breast_ultrasound_busi")
    folder = tmp_path_factory.mktemp("busi")
    rows = ["path,label"] + [f'"{p}",{cls}' for cls in ("benign", "malignant", "normal")
                             for p in sorted((root / cls).glob("*.png"))[:4]]
    (folder / "busi.csv").write_text("\n".join(rows) + "\n")
    return _train(folder / "busi.csv", folder / "model", [32, 32])


@pytest.fixture(scope="module")
def adrenal_model(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 3D binary model from 8 AdrenalMNIST3D volumes at 16^3, and a held-out volume (64^3)."""
    src = require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz")
    folder = tmp_path_factory.mktemp("adrenal")
    with np.load(src) as z:
        labels = z["train_labels"][:, 0]
        pick = np.concatenate([np.flatnonzero(labels == c)[:4] for c in (0, 1)])
        np.savez_compressed(folder / "adrenal.npz", train_images=z["train_images"][pick],
                            train_labels=z["train_labels"][pick])
        held_out = z["val_images"][0]
    return _train(folder / "adrenal.npz", folder / "model", [16, 16, 16]), held_out


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}</h2>")
    end = html.find("<h2>", start + 1)
    return html[start:end]


def _one_line_error(capsys, *words: str) -> str:
    return one_line_error(capsys.readouterr().err, *words)

def test_2d_image_gets_classification_section_json_entry_and_explain_files(busi_model, tmp_path, capsys):
    src = require_data(*BUSI_IMAGE)
    out = tmp_path / "out"
    assert main(["analyze", str(src), "-o", str(out), "--classifier", str(busi_model), "--pixel-spacing", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "classifier:   model: " in printed and "nats" in printed and "report.html" in printed
    assert sorted(p.name for p in out.iterdir()) == ["explain", "masks", "measurements.csv", "measurements.json",
                                                     "report.html"]
    payload = json.loads((out / "measurements.json").read_text())
    # issue 12: no analysis pipeline applies to breast ultrasound (it used to be counted as nuclei): classified only
    assert payload["pipeline"] == "none" and not payload["masks"]
    assert any("no automatic pipeline for" in n for n in payload["notes"])
    c = payload["classification"]
    assert c["model"] == str(busi_model) and c["id"] == "benign (1).png"
    assert list(c["probabilities"]) == ["benign", "malignant", "normal"]
    assert sum(c["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert c["pred"] == max(c["probabilities"], key=c["probabilities"].get)
    assert c["entropy"] >= c["mutual_information"] >= 0 and c["entropy_units"] == "nats"
    assert c["uncertainty"]["method"] == "tta" and c["folds"] == ["fold_0"] and c["temperatures"][0] > 0
    assert c["explain"] == {"method": "gradcam", "class": c["pred"], "png": "explain/benign_1.png",
                            "nifti": "explain/benign_1.nii.gz"}
    assert (out / "explain" / "benign_1.png").stat().st_size > 0
    saliency = read(out / "explain" / "benign_1.nii.gz")
    image = read(src)
    assert saliency.spatial_shape == image.spatial_shape and saliency.spacing[:2] == pytest.approx((0.1, 0.1))
    section = _section((out / "report.html").read_text(), "Classification")
    probabilities = [float(v) for v in re.findall(r'<tr><td>(?:benign|malignant|normal)</td><td class="num">'
                                                   r"([0-9.e+-]+)</td>", section)]
    assert len(probabilities) == 3 and sum(probabilities) == pytest.approx(1.0, abs=2e-3)
    for text in ("calibrated", "predictive entropy (nats)", "mutual information (nats)", "tta (4 samples)",
                 "temperature", "fold_0: ", str(busi_model), "data:image/png;base64,", f"<td>{c['pred']}</td>"):
        assert text in section, text


def test_3d_volume_without_pipeline_is_only_classified(adrenal_model, tmp_path, capsys):
    model, volume = adrenal_model
    src = tmp_path / "adrenal.nii.gz"  # 2 mm voxels of 0..255: no automatic pipeline applies
    write(Image.from_array(volume.astype(np.int16), spacing=(2.0, 2.0, 2.0)), src)
    out = tmp_path / "out"
    assert main(["analyze", str(src), "-o", str(out), "--classifier", str(model)]) == 0
    printed = capsys.readouterr().out
    assert "pipeline:     none" in printed and "only the classification ran" in printed
    payload = json.loads((out / "measurements.json").read_text())
    assert payload["pipeline"] == "none" and payload["masks"] == {} and payload["measurements"] == []
    assert sum(payload["classification"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert (out / "explain" / "adrenal.png").stat().st_size > 0  # montage of the most salient slices
    read(src).check_same_grid(read(out / "explain" / "adrenal.nii.gz"))
    html = (out / "report.html").read_text()
    assert "<h2>Classification</h2>" in html and "most salient slices" in html and "<h2>Measurements</h2>" not in html
    # the same by choice, without an explanation map; an earlier output is replaced
    assert main(["analyze", str(src), "-o", str(out), "--classifier", str(model), "--pipeline", "none",
                 "--classifier-explain", "none", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    payload = json.loads((out / "measurements.json").read_text())
    assert payload["parameters"]["pipeline_choice"] == "chosen by the user (--pipeline none)"
    assert payload["classification"]["explain"] == {"method": "none", "class": None}
    assert not (out / "explain").exists()


@pytest.mark.parametrize("case", ["not_a_classifier", "no_such_model", "3d_for_2d", "2d_for_3d", "channels",
                                  "pipeline_none_alone", "ensemble_one_fold", "folder_of_cases"])
def test_bad_classifier_inputs_one_line_exit_2_nothing_written(case, busi_model, adrenal_model, tmp_path, capsys):
    volume = tmp_path / "v.nii.gz"
    write(Image.from_array(np.zeros((16, 16, 16), np.int16), spacing=(2.0, 2.0, 2.0)), volume)
    busi = str(require_data(*BUSI_IMAGE))
    src, model, extra = str(volume), str(adrenal_model[0]), []
    if case == "not_a_classifier":
        seg = tmp_path / "seg"
        seg.mkdir()
        (seg / "plan.json").write_text(json.dumps({"schema_version": 1, "task": "segment", "patch_size": [32, 32]}))
        model, words = str(seg), ("--classifier", "not a classification model", "segmentation", "Fix:")
    elif case == "no_such_model":
        model, words = str(tmp_path / "missing"), ("--classifier", "no such model", "medimg models")
    elif case == "3d_for_2d":
        model, words = str(busi_model), ("--classifier", "v.nii.gz", "3D", "takes 2D images", "Fix:")
    elif case == "2d_for_3d":
        src, words = busi, ("--classifier", "benign (1).png", "2D", "takes 3D images", "Fix:")
    elif case == "channels":
        src = str(tmp_path / "five.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros((16, 16, 16, 5), np.float32), np.eye(4)), src)
        words = ("--classifier", "five.nii.gz", "channel", "5 channels", "Fix:")
    elif case == "pipeline_none_alone":
        model, extra, words = "", ["--pipeline", "none"], ("--pipeline", "--classifier MODEL")
    elif case == "ensemble_one_fold":
        extra, words = ["--classifier-uncertainty", "ensemble"], ("--classifier-uncertainty", "several folds")
        extra += ["--pipeline", "none"]
    else:
        folder = tmp_path / "cases"
        folder.mkdir()
        write(Image.from_array(np.zeros((16, 16, 16), np.int16)), folder / "a.nii.gz")
        write(Image.from_array(np.zeros((16, 16, 16), np.int16)), folder / "b.nii.gz")
        src, words = str(folder), ("--classifier", "one image", "medimg predict")
    out = tmp_path / "out"
    argv = ["analyze", src, "-o", str(out), *(["--classifier", model] if model else []), *extra]
    assert main(argv) == 2
    _one_line_error(capsys, *words)
    assert not out.exists() and not (tmp_path / ".out.partial").exists()


def test_cli_choices_match_the_library():
    from medimg.cli._classify import EXPLAIN_CHOICES, UNCERTAINTY_CHOICES
    from medimg.tasks.classify.predictor import EXPLAIN_METHODS, UNCERTAINTY_METHODS

    assert EXPLAIN_CHOICES == EXPLAIN_METHODS and UNCERTAINTY_CHOICES == UNCERTAINTY_METHODS

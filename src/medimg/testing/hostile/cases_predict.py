"""The hostile cases of the ``predict`` area: model folders (pickles, garbage weights, broken plans), outputs that
overlap inputs, training resumes. Each registers itself in :data:`~medimg.testing.hostile.registry.CASES` through
:func:`~medimg.testing.hostile.registry.case`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medimg.testing.hostile.files import model_folder, nuclei_png, pickle_bomb, sample_nifti, seg_dataset
from medimg.testing.hostile.registry import Built, case


# -- predict / train ------------------------------------------------------------------------------------------
@case("predict_pickle_model_pt", "predict", "refuse",
      "a model.pt pickle whose __reduce__ creates a file, given to predict")
def _(root: Path) -> Built:
    marker = root / "PWNED"
    model = model_folder(root / "model", weights=pickle_bomb(marker))
    img = sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("model.pt",), [marker])


@case("train_resume_pickle_checkpoint", "predict", "refuse",
      "train segment --resume with crafted checkpoint.pt/model.pt pickles in the model folder")
def _(root: Path) -> Built:
    marker = root / "PWNED"
    ds = seg_dataset(root / "dataset")
    out = root / "model"
    (out / "fold_0").mkdir(parents=True)
    bomb = pickle_bomb(marker)
    (out / "fold_0" / "checkpoint.pt").write_bytes(bomb)
    (out / "fold_0" / "model.pt").write_bytes(bomb)
    argv = ["train", "segment", str(ds), "-o", str(out), "--resume", "--folds", "2", "--fold", "0",
            "--iterations", "2", "--threads", "1"]
    return Built([argv], (".pt", "checkpoint", "fold_0"), [marker])


@case("predict_garbage_model_pt", "predict", "refuse", "model.pt of random bytes")
def _(root: Path) -> Built:
    model = model_folder(root / "model", weights=np.random.default_rng(1).bytes(4096))
    img = sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("model.pt",))


@case("predict_broken_postprocess_json", "predict", "refuse", "postprocess.json that is not JSON")
def _(root: Path) -> Built:
    model = model_folder(root / "model")
    (model / "postprocess.json").write_text('{"largest_component_classes": [1,')
    img = sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("postprocess.json",))


@case("predict_plan_256gb", "predict", "refuse", "plan.json whose patch needs about 256 GB", isolate=True)
def _(root: Path) -> Built:
    model = model_folder(root / "model")
    plan = json.loads((model / "plan.json").read_text())
    plan["patch_size"] = [1024, 1024, 1024]
    plan["batch_size"] = 64
    (model / "plan.json").write_text(json.dumps(plan))
    img = sample_nifti(root / "in.nii.gz")
    return Built([["predict", str(model), str(img), str(root / "pred.nii.gz")]], ("plan.json", "patch", "GB"))


@case("predict_bad_probabilities_path", "predict", "refuse",
      "predict with a --probabilities path of an unknown extension leaves no prediction behind")
def _(root: Path) -> Built:
    img = sample_nifti(root / "in.nii.gz")
    argv = ["predict", "hippocampus", str(img), str(root / "pred.nii.gz"), "--probabilities",
            str(root / "probs.xyz")]
    return Built([argv], ("probs.xyz", "--probabilities"))


@case("train_dataset_as_output", "predict", "refuse", "train segment DATASET -o DATASET")
def _(root: Path) -> Built:
    ds = seg_dataset(root / "dataset")
    return Built([["train", "segment", str(ds), "-o", str(ds), "--folds", "2", "--iterations", "2", "--threads",
                   "1"]],
                 ("dataset", "-o", "--out"))


@case("analyze_input_inside_output", "predict", "refuse",
      "analyze OUT/in.png -o OUT, OUT an earlier analyze output (replacing OUT would delete the input)")
def _(root: Path) -> Built:
    (root / "out").mkdir()
    (root / "out" / "measurements.json").write_text('{"format": "medimg_analyze", "measurements": []}')
    img = nuclei_png(root / "out" / "in.png")
    return Built([["analyze", str(img), "-o", str(root / "out"), "--pipeline", "nuclei"]], ("out", "input", "in.png"))


@case("analyze_keeps_user_partial", "predict", "ok_or_refuse",
      "a user's own .OUT.partial folder beside OUT is never deleted")
def _(root: Path) -> Built:
    img = nuclei_png(root / "in.png")
    (root / ".out.partial").mkdir()
    (root / ".out.partial" / "notes.txt").write_text("mine")

    def check() -> None:
        assert (root / ".out.partial" / "notes.txt").read_text() == "mine"

    return Built([["analyze", str(img), "-o", str(root / "out"), "--pipeline", "nuclei"]], ("out",), check=check)

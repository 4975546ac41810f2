"""Learned registration end to end: the plan, the datasets, training (unsupervised, supervised), prediction, the
command line (`medimg train register`, `medimg register --method learned`) and its one-line errors.

Synthetic data: small 3D Gaussian blobs (16^3, 1 mm) at random shifts; models are tiny (features [4, 8], grid 16^3)
and trained for a few iterations, so only the contracts are checked, not the registration quality.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medimg.cli import main as cli_main
from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image
from medimg.io import read, write
from medimg.io.sitk_bridge import to_sitk
from medimg.models import RegistrationSpec, build_registration_net, list_registration_nets
from medimg.tasks.register.data import RegDataset, check_pair_image
from medimg.tasks.register.losses import registration_loss
from medimg.tasks.register.plan import RegisterPlan
from medimg.tasks.register.planner import MAX_VOXELS, plan_registration
from medimg.tasks.register.predictor import LearnedRegistration
from medimg.tasks.register.preprocess import (
    canonical_grid,
    centre_translation,
    image_centre,
    normalise,
    to_canonical,
)
from medimg.tasks.register.trainer import (
    RegisterTrainOptions,
    simulate_field,
    train_registration,
)
from medimg.testing import label_phantom, one_line_error, phantom, require_data

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)

#: plan overrides that make a model train in well under a second per few iterations
TINY = (("features", [4, 8]), ("grid", [16, 16, 16]), ("val_pairs", 2), ("batch_size", 1))
TINY_CLI = ["--set", "features=[4,8]", "--set", "grid=[16,16,16]", "--set", "val_pairs=2", "--set", "batch_size=1"]
N_CASES = 6


def _blob(shift, n: int = 16, sigma: float = 3.0) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float)] * 3, indexing="ij")
    c = (n - 1) / 2 + np.asarray(shift, float)
    return (1000 * np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * sigma ** 2))).astype(
        np.float32)


def _blob_images(seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(N_CASES):
        arr = _blob(rng.uniform(-3, 3, 3))
        lab = (arr > 300).astype(np.uint8) + (arr > 700).astype(np.uint8)  # 1 shell, 2 core
        yield f"case{i}", Image.from_array(arr, spacing=(1, 1, 1)), Image.from_array(lab, spacing=(1, 1, 1),
                                                                                       kind="label")


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    """A plain folder of 6 blob images (no labels)."""
    root = tmp_path_factory.mktemp("plain")
    for case, image, _ in _blob_images():
        write(image, root / f"{case}.nii.gz")
    return root


@pytest.fixture(scope="module")
def nnunet_folder(tmp_path_factory):
    """An nnU-Net raw folder of the same 6 blobs with label maps (0 background, 1 shell, 2 core)."""
    root = tmp_path_factory.mktemp("nnunet")
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    for case, image, label in _blob_images():
        write(image, root / "imagesTr" / f"{case}_0000.nii.gz")
        write(label, root / "labelsTr" / f"{case}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "name": "blobs", "channel_names": {"0": "MRI"}, "labels": {"background": 0, "shell": 1, "core": 2},
        "numTraining": N_CASES, "file_ending": ".nii.gz"}))
    return root


@pytest.fixture(scope="module")
def tiny_model(nnunet_folder, tmp_path_factory):
    """A 3D model trained for 4 iterations on the labelled blobs (fold 0 of 3: 4 training, 2 validation cases)."""
    out = tmp_path_factory.mktemp("models") / "blobs"
    metrics = train_registration(nnunet_folder, out, RegisterTrainOptions(n_folds=3, iterations=4, overrides=TINY))
    return out, metrics


def _error(argv, capsys, *words) -> str:
    assert cli_main.main(argv) == 2
    return one_line_error(capsys.readouterr().err, *words)


def _nothing_written(out) -> None:
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    assert not list(out.parent.glob(f".{out.name}*")), "temporary output left behind"


# ---- the plan --------------------------------------------------------------------------------------------------
def test_plan_rules_grid_levels_labels_batch():
    shapes = [(36, 50, 35), (40, 52, 38), (34, 48, 36)]
    p = plan_registration([(1.0, 1.0, 1.0)] * 3, shapes, dims=3, label_values=(0, 1, 2))
    assert p.grid == (40, 56, 40) and p.spacing == (1.0, 1.0, 1.0) and p.features == (16, 32, 32, 32)
    assert all(g % p.divisor == 0 for g in p.grid) and p.divisor == 8
    assert p.dice_weight == 1.0 and p.label_values == (0, 1, 2) and p.batch_size == 4 and p.n_cases == 3
    assert p.similarity == "ncc" and p.mode == "unsupervised" and p.prealign == "center" and p.notes
    # no labels (or background only): no Dice term; several modalities: mutual information
    assert plan_registration([(1.0,) * 3] * 3, shapes, dims=3).dice_weight == 0.0
    assert plan_registration([(1.0,) * 3] * 3, shapes, dims=3, label_values=(0,)).dice_weight == 0.0
    assert plan_registration([(1.0,) * 3] * 3, shapes, dims=3, multimodal=True).similarity == "mi"
    # small images: 3 levels, grid rounded up to multiples of 4; spacing is the per-axis median (x, y, z)
    small = plan_registration([(0.5, 0.6, 2.0), (0.7, 0.6, 3.0), (0.6, 0.6, 2.5)], [(9, 33, 37)] * 3, dims=3)
    assert small.features == (16, 32, 32) and small.divisor == 4
    assert small.spacing == pytest.approx((0.6, 0.6, 2.5))
    assert all(g % 4 == 0 for g in small.grid) and small.grid[0] >= 9 * 3.0 / 2.5
    # large images: coarser isotropic spacing so that the grid stays near MAX_VOXELS; a smaller batch
    big = plan_registration([(1.0, 1.0, 1.0)] * 2, [(150, 200, 220)] * 2, dims=3)
    factor = (150 * 200 * 220 / MAX_VOXELS) ** (1 / 3)
    assert big.spacing == pytest.approx((factor,) * 3) and big.features == (16, 32, 32, 32)
    assert big.grid == tuple(int(np.ceil(n / factor / 8) * 8) for n in (150, 200, 220)) == (80, 104, 120)
    assert big.batch_size == 2 and any("enlarged" in n for n in big.notes)  # 998400 voxels <= 1M: batch 2
    # 2D: the last two entries of a shape, spacing (sx, sy)
    flat = plan_registration([(0.5, 0.5, 1.0)] * 2, [(1, 100, 120)] * 2, dims=2)
    assert flat.dims == 2 and flat.spacing == (0.5, 0.5) and flat.grid == (104, 120)


@pytest.mark.parametrize("spacing, shape, grid", [(0.3, (40, 48, 56), (40, 48, 56)),
                                                  (0.1, (40, 48, 56), (40, 48, 56)),
                                                  (1.0, (200, 200, 200), (96, 96, 96))])
def test_plan_grid_is_not_inflated_by_round_off(spacing, shape, grid):
    assert plan_registration([(spacing,) * 3] * 2, [shape] * 2, dims=3).grid == grid


@pytest.mark.parametrize("kwargs", [dict(spacings=[], shapes=[], dims=3),
                                    dict(spacings=[(1, 1, 1)], shapes=[(8, 8, 8)], dims=4),
                                    dict(spacings=[(1, 1, 1)], shapes=[(8, 8, 8), (8, 8, 8)], dims=3)])
def test_plan_registration_refuses_bad_input(kwargs):
    with pytest.raises(InvalidParameterError):
        plan_registration(kwargs.pop("spacings"), kwargs.pop("shapes"), **kwargs)


def test_plan_json_round_trip(tmp_path):
    plan = plan_registration([(1.0, 1.0, 1.0)] * 3, [(36, 50, 35)] * 3, dims=3, label_values=(0, 1, 2),
                             dataset="blobs").replace(mode="supervised", prealign="affine", lr=1e-3)
    path = plan.save(tmp_path / "plan.json")
    data = json.loads(path.read_text())
    assert data["task"] == "register" and data["grid"] == list(plan.grid) and data["mode"] == "supervised"
    back = RegisterPlan.load(path)
    assert back == plan and isinstance(back.grid, tuple) and isinstance(back.label_values, tuple)
    assert RegisterPlan.from_json(plan.to_json()) == plan


def test_plan_replace_refuses_unknown_fields_and_invalid_values():
    plan = RegisterPlan(dims=3, spacing=(1, 1, 1), grid=(16, 16, 16), features=(4, 8))
    assert plan.replace(grid=[6, 8, 10]).grid == (6, 8, 10) and plan.grid == (16, 16, 16)  # a copy
    with pytest.raises(InvalidParameterError, match="unknown plan field"):
        plan.replace(unknown_field=1)
    bad = [dict(grid=[15, 16, 16]),                       # not a multiple of 2 ** (levels - 1) = 2
           dict(grid=[16, 16]),                           # wrong length
           dict(features=[4, 8, 8, 8], grid=[12, 16, 16]),  # 12 is not a multiple of 8
           dict(mode="bogus"), dict(similarity="ssd"), dict(prealign="rigid"), dict(regulariser="tv"),
           dict(ncc_window=4), dict(reg_weight=-1.0), dict(lr=float("nan")), dict(batch_size=0),
           dict(percentiles=[99.0, 1.0]), dict(spacing=[1, 0, 1]), dict(dims=4), dict(features=[])]
    for overrides in bad:
        with pytest.raises(InvalidParameterError):
            plan.replace(**overrides)
    with pytest.raises(InvalidParameterError, match="not a registration plan"):
        RegisterPlan.from_dict({**plan.to_dict(), "task": "segment"})
    with pytest.raises(InvalidParameterError, match="newer"):
        RegisterPlan.from_dict({**plan.to_dict(), "schema_version": 99})
    with pytest.raises(InvalidParameterError, match="lacks"):
        RegisterPlan.from_dict({"dims": 3, "spacing": [1, 1, 1]})


# ---- datasets and the shared preprocessing ---------------------------------------------------------------------
def test_regdataset_opens_the_layouts(plain_folder, nnunet_folder, tmp_path):
    plain = RegDataset.open(plain_folder)
    assert plain.layout == "images" and plain.dims == 3 and not plain.has_labels and len(plain) == N_CASES
    assert plain.cases == sorted(plain.cases) and plain.load_label(plain.cases[0]) is None
    assert plain.load_image("case0").spatial_shape == (16, 16, 16)
    nn = RegDataset.open(nnunet_folder)
    assert nn.layout == "nnunet" and nn.has_labels and nn.label_values == (0, 1, 2) and nn.cases == plain.cases
    assert set(np.unique(nn.load_label("case0").array)) == {0, 1, 2}
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(plain_folder / "case0.nii.gz", one)
    with pytest.raises(ImageReadError, match="not a registration dataset"):
        RegDataset.open(one)
    with pytest.raises(ImageReadError, match="not found"):
        RegDataset.open(tmp_path / "missing")


def test_canonical_grid_normalise_and_pair_checks():
    img = phantom((12, 20, 24), spacing=(0.8, 0.9, 2.5))  # oblique direction, anisotropic
    arr = normalise(img.voxels[0], (0.5, 99.5))
    assert arr.dtype == np.float32 and arr.min() == 0.0 and arr.max() == 1.0
    assert not normalise(np.full((4, 4), 7.0), (0.5, 99.5)).any()
    ref = canonical_grid(img, (1.0, 1.0, 1.0), (16, 16, 16))
    src = canonical_grid(img, img.spacing, img.spatial_shape)  # the image's own grid
    assert ref.GetSize() == (16, 16, 16) and ref.GetDirection() == pytest.approx(src.GetDirection())
    assert image_centre(ref) == pytest.approx(image_centre(src))
    cover = canonical_grid(img, (1.0, 1.0, 1.0), (8, 8, 8), divisor=8, cover=True)
    assert all(s % 8 == 0 for s in cover.GetSize()) and cover.GetSize() >= (20, 18, 30)  # extent 19.2 x 18 x 30 mm
    assert image_centre(cover) == pytest.approx(image_centre(src))
    out = to_canonical(img, ref)
    assert out.shape == (16, 16, 16) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    lab = to_canonical(label_phantom((12, 20, 24), spacing=(0.8, 0.9, 2.5)), ref, label=True)
    assert lab.dtype == np.int16 and set(np.unique(lab)) <= {0, 1, 2}
    moved = phantom((12, 20, 24), origin=(-5.0, 5.0, 30.0))
    tx = centre_translation(to_sitk(phantom((12, 20, 24)), channel=0), to_sitk(moved, channel=0))
    assert tx.GetOffset() == pytest.approx((5.0, 0.0, 0.0))
    flat = Image.from_array(np.zeros((8, 8), np.float32))
    with pytest.raises(InvalidParameterError, match="registers 3D images"):
        check_pair_image(flat, "fixed", 3)
    assert check_pair_image(flat, "fixed", 2) is not None


# ---- training ----------------------------------------------------------------------------------------------------
def test_train_registration_writes_the_model_folder(tiny_model):
    out, metrics = tiny_model
    assert {"plan.json", "splits.json", "fold_0"} <= {p.name for p in out.iterdir()}
    for name in ("model.pt", "metrics.json", "training_curve.png"):
        assert (out / "fold_0" / name).is_file(), name
    plan = RegisterPlan.load(out / "plan.json")
    assert plan.features == (4, 8) and plan.grid == (16, 16, 16) and plan.label_values == (0, 1, 2)
    assert plan.dice_weight == 1.0 and plan.n_cases == N_CASES
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits["folds"]) == 3 and len(splits["folds"][0]["val"]) == 2
    on_disk = json.loads((out / "fold_0" / "metrics.json").read_text())
    assert on_disk["iterations"] == 4 == metrics["iterations"] and on_disk["mode"] == "unsupervised"
    assert on_disk["n_train"] == 4 and on_disk["n_val"] == 2 and np.isfinite(on_disk["final_loss_mean_of_last_100"])
    val = on_disk["validation"]
    for key in ("mean_dice_before", "mean_dice_after", "folding_fraction_mean", "seconds_mean", "pairs"):
        assert key in val, key
    assert val["n_pairs"] == len(val["pairs"]) == 2
    assert 0 <= val["mean_dice_after"] <= 1 and 0 <= val["folding_fraction_mean"] < 0.01
    assert set(val["pairs"][0]["dice_after"]) == {"1", "2"}


def test_train_on_a_plain_folder_validates_without_dice_and_resumes_the_plan(plain_folder, tmp_path):
    out = tmp_path / "plain_model"
    m = train_registration(plain_folder, out, RegisterTrainOptions(n_folds=3, iterations=2, overrides=TINY))
    assert m["validation"]["n_pairs"] == 2 and "mean_dice_after" not in m["validation"]
    assert RegisterPlan.load(out / "plan.json").dice_weight == 0.0
    # a second fold reuses plan.json and splits.json (the overrides are kept in the saved plan)
    m1 = train_registration(plain_folder, out, RegisterTrainOptions(fold=1, n_folds=3, iterations=1))
    assert m1["fold"] == "fold_1" and (out / "fold_1" / "model.pt").is_file()
    assert RegisterPlan.load(out / "plan.json").features == (4, 8)
    # every case, no validation
    m_all = train_registration(plain_folder, out, RegisterTrainOptions(fold="all", iterations=1))
    assert m_all["fold"] == "fold_all" and m_all["n_val"] == 0 and "validation" not in m_all


def test_supervised_mode_trains_on_simulated_fields(plain_folder, tmp_path):
    out = tmp_path / "supervised"
    m = train_registration(plain_folder, out, RegisterTrainOptions(
        n_folds=3, iterations=3, overrides=TINY + (("mode", "supervised"), ("simulate_max_mm", 2.0))))
    assert m["mode"] == "supervised" and m["iterations"] == 3 and np.isfinite(m["final_loss_mean_of_last_100"])
    assert (out / "fold_0" / "model.pt").is_file() and (out / "fold_0" / "metrics.json").is_file()
    assert json.loads((out / "fold_0" / "metrics.json").read_text())["validation"]["n_pairs"] == 2
    assert RegisterPlan.load(out / "plan.json").mode == "supervised"


@pytest.mark.parametrize("overrides", [(("similarity", "mi"), ("regulariser", "bending")),
                                       (("similarity", "mse"), ("prealign", "affine"), ("integrate", False))])
def test_cross_modal_and_affine_variants_train_and_register(plain_folder, tmp_path, overrides):
    """MI + bending energy (the cross-modal setting) and MSE after affine pre-alignment to a template case (no
    integration) train, record their plan, and register a pair with that pre-alignment."""
    out = tmp_path / "variant"
    m = train_registration(plain_folder, out, RegisterTrainOptions(n_folds=3, iterations=3,
                                                                   overrides=TINY + overrides))
    assert np.isfinite(m["final_loss_mean_of_last_100"]) and m["iterations"] == 3
    plan = RegisterPlan.load(out / "plan.json")
    assert all(getattr(plan, k) == v for k, v in overrides)
    assert any("overridden with --set" in n for n in plan.notes)
    if plan.prealign == "affine":
        assert m["prealign_template"] in json.loads((out / "splits.json").read_text())["folds"][0]["train"]
    ds = RegDataset.open(plain_folder)
    res = LearnedRegistration.load(out).register(ds.load_image(ds.cases[0]), ds.load_image(ds.cases[1]))
    assert res.params["prealign"] == plan.prealign and res.metric == ("mattes" if plan.similarity == "mi" else "ncc")
    assert res.warped.spatial_shape == ds.load_image(ds.cases[0]).spatial_shape


def test_simulate_field_and_supervised_loss():
    from medimg.metrics.registration import jacobian_determinant
    from medimg.models.spatial import to_metric_layout

    u = simulate_field((12, 16, 16), 3.0, np.random.default_rng(1))
    again = simulate_field((12, 16, 16), 3.0, np.random.default_rng(1))
    assert u.shape == (3, 12, 16, 16) and torch.equal(u, again)
    norm = float(u.pow(2).sum(0).sqrt().max())
    assert 1.0 < norm < 6.0                      # the velocity's largest vector is 3 voxels
    assert np.min(jacobian_determinant(to_metric_layout(u, (1.0, 1.0, 1.0)).numpy())) > 0  # diffeomorphic
    plan = RegisterPlan(dims=3, spacing=(1, 1, 1), grid=(12, 16, 16), features=(4, 8), mode="supervised",
                        integrate=False, reg_weight=0.0)
    target = torch.cat([torch.zeros(1, 2, 12, 16, 16), u[None]], dim=1)
    loss = registration_loss(plan)
    assert float(loss(u[None], target)) == pytest.approx(0.0, abs=1e-4)
    assert float(loss(torch.zeros_like(u[None]), target)) > 0.1


def test_unsupervised_loss_adds_the_dice_term_with_labels():
    g = torch.Generator().manual_seed(0)
    fixed, moving = torch.rand(1, 1, 8, 8, 8, generator=g), torch.rand(1, 1, 8, 8, 8, generator=g)
    onehot = (torch.rand(1, 4, 8, 8, 8, generator=g) > 0.5).float()  # 2 foreground labels, fixed then moving
    base = RegisterPlan(dims=3, spacing=(1, 1, 1), grid=(8, 8, 8), features=(4, 8), label_values=(0, 1, 2))
    raw = torch.zeros(1, 3, 8, 8, 8)
    target = torch.cat([fixed, moving, onehot], dim=1)
    without = float(registration_loss(base)(raw, target))
    with_dice = float(registration_loss(base.replace(dice_weight=1.0))(raw, target))
    assert np.isfinite(without) and with_dice > without
    assert float(registration_loss(base)(raw, torch.cat([fixed, fixed], 1))) == pytest.approx(-1.0, abs=1e-3)


# ---- prediction ----------------------------------------------------------------------------------------------------
def test_learned_registration_returns_a_transform_and_a_warp_on_the_fixed_grid(tiny_model):
    from medimg.classical.registration import displacement_field

    model = LearnedRegistration.load(tiny_model[0])
    assert model.folds == ["fold_0"] and len(model.nets) == 1 and model.plan.dims == 3
    # a fixed image on another grid than the training grid (anisotropic, oblique, larger than 16 mm)
    fixed = phantom((12, 20, 24), spacing=(0.8, 0.9, 2.5))
    moving = phantom((14, 18, 22), spacing=(1.0, 1.0, 2.0), origin=(-8.0, 6.0, 31.0), seed=1)
    result = model.register(fixed, moving)
    assert result.method == "learned" and result.seconds > 0 and result.iterations == 1
    assert result.warped.spatial_shape == fixed.spatial_shape
    assert np.allclose(result.warped.geometry.origin, fixed.geometry.origin)
    assert np.allclose(result.warped.geometry.spacing, fixed.geometry.spacing)
    tx = result.transform
    assert isinstance(tx, sitk.CompositeTransform) and tx.GetNumberOfTransforms() == 2
    field_tx = sitk.DisplacementFieldTransform(tx.GetNthTransform(1))
    field = field_tx.GetDisplacementField()
    grid = result.params["network_grid"]
    assert list(field.GetSize()[::-1]) == grid and all(g % model.plan.divisor == 0 for g in grid)
    assert field.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))                 # the plan's spacing
    assert field.GetDirection() == pytest.approx(np.asarray(fixed.geometry.direction).ravel().tolist())
    ref = canonical_grid(fixed, (1.0, 1.0, 1.0), grid)
    assert field.GetOrigin() == pytest.approx(ref.GetOrigin())                  # centred on the fixed image
    dense = displacement_field(result)
    assert dense.spatial_shape == fixed.spatial_shape and dense.n_channels == 3
    assert result.params["prealign"] == "center" and result.params["folds"] == ["fold_0"]
    with pytest.raises(InvalidParameterError, match="pre-alignment"):
        model.register(fixed, moving, prealign="rigid")
    with pytest.raises(InvalidParameterError, match="3D"):
        model.register(Image.from_array(np.zeros((16, 16), np.float32)), moving)


class _ConstantField(torch.nn.Module):
    """A stand-in network predicting the same displacement (voxels, components z, y, x) everywhere."""

    def __init__(self, u_zyx):
        super().__init__()
        self.u = torch.tensor(u_zyx, dtype=torch.float32)

    def predict_field(self, fixed, moving):
        shape = fixed.shape[2:]
        return self.u.view(1, -1, *([1] * len(shape))).expand(1, len(self.u), *shape).clone()


def test_field_direction_and_composition_with_the_prealignment(tmp_path):
    """T(x) = A(x + u(x)): the network's voxel field (z, y, x) becomes direction @ (spacing * u_xyz) in mm, after
    which the centre pre-alignment is applied."""
    plan = RegisterPlan(dims=3, spacing=(1.5, 1.0, 2.0), grid=(8, 8, 8), features=(4, 8), integrate=False)
    u_zyx = (1.0, -2.0, 3.0)
    model = LearnedRegistration(plan=plan, folder=tmp_path, nets=[_ConstantField(u_zyx)], folds=["fold_0"])
    fixed = phantom((12, 20, 24), spacing=(0.8, 0.9, 2.5))          # oblique direction
    moving = phantom((12, 20, 24), spacing=(0.8, 0.9, 2.5), origin=(-4.0, 5.0, 33.0), seed=1)
    result = model.register(fixed, moving)
    direction = np.asarray(fixed.geometry.direction).reshape(3, 3)
    d = direction @ (np.array(plan.spacing) * np.array(u_zyx[::-1]))  # mm, LPS
    centres = np.array([6.0, 0.0, 3.0])                               # moving centre - fixed centre
    f_img = to_sitk(fixed, channel=0)
    for index in ((5, 6, 7), (10, 12, 6), (12, 10, 5)):                 # (x, y, z) voxels inside the image
        p = np.asarray(f_img.TransformIndexToPhysicalPoint(index))
        assert np.asarray(result.transform.TransformPoint(tuple(p))) - p == pytest.approx(d + centres, abs=1e-6)


@pytest.mark.parametrize("what", ["empty", "segmentation", "no_fold", "bad_weights"])
def test_load_refuses_folders_that_are_not_registration_models(what, tiny_model, tmp_path):
    from medimg.zoo import ZOO

    folder = tmp_path / what
    if what == "segmentation":
        folder = ZOO["hippocampus"].path
    else:
        folder.mkdir()
    if what in ("no_fold", "bad_weights"):
        shutil.copy(tiny_model[0] / "plan.json", folder)
    if what == "bad_weights":
        (folder / "fold_0").mkdir()
        torch.save({"nothing": torch.zeros(1)}, folder / "fold_0" / "model.pt")
    error = InvalidParameterError if what == "segmentation" else ImageReadError
    match = {"empty": "not a model folder", "segmentation": "not a registration model",
             "no_fold": "no trained fold", "bad_weights": "mismatched weights"}[what]
    with pytest.raises(error, match=match):
        LearnedRegistration.load(folder)


# ---- the registry ----------------------------------------------------------------------------------------------
def test_registration_net_registry():
    assert "registration_unet" in list_registration_nets()
    assert list_registration_nets("registration_*") == ["registration_unet"]
    net = build_registration_net(RegistrationSpec(dims=2, features=(4, 8)))
    fixed, moving = torch.rand(2, 1, 8, 12), torch.rand(2, 1, 8, 12)
    assert net.predict_field(fixed, moving).shape == (2, 2, 8, 12)
    warped, field = net(fixed, moving)
    assert warped.shape == (2, 1, 8, 12) and field.shape == (2, 2, 8, 12)
    net3 = build_registration_net(RegistrationSpec(dims=3, features=(4, 8, 8)))
    assert net3.predict_field(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8)).shape == (1, 3, 8, 8, 8)
    with pytest.raises(InvalidParameterError):
        RegistrationSpec(dims=4)
    with pytest.raises(InvalidParameterError, match="unknown"):
        build_registration_net(RegistrationSpec(name="no_such_net"))


# ---- the command line: real data -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hippo_model(tmp_path_factory):
    root = require_data("hippocampus")
    out = tmp_path_factory.mktemp("hippo") / "model"
    code = cli_main.main(["train", "register", str(root), "-o", str(out), "--iterations", "5", "-q",
                          "--set", "features=[4,8]", "--set", "grid=[32,48,32]", "--set", "val_pairs=2",
                          "--set", "batch_size=1"])
    assert code == 0
    return root, out


@pytest.mark.realdata
def test_cli_train_register_on_real_hippocampus(hippo_model):
    _, out = hippo_model
    m = json.loads((out / "fold_0" / "metrics.json").read_text())
    assert m["iterations"] == 5 and m["validation"]["n_pairs"] == 2 and "mean_dice_after" in m["validation"]
    plan = RegisterPlan.load(out / "plan.json")
    assert plan.label_values == (0, 1, 2) and plan.dice_weight == 1.0 and plan.grid == (32, 48, 32)
    assert (out / "fold_0" / "training_curve.png").is_file() and (out / "splits.json").is_file()


@pytest.mark.realdata
def test_cli_register_learned_on_a_real_pair_writes_the_output_contract(hippo_model, tmp_path, capsys):
    root, model = hippo_model
    img, lab = root / "imagesTr", root / "labelsTr"
    out = tmp_path / "out"
    code = cli_main.main(["register", str(img / "hippocampus_001_0000.nii.gz"),
                          str(img / "hippocampus_006_0000.nii.gz"), "-o", str(out), "--method", "learned",
                          "--model", str(model), "--labels", str(lab / "hippocampus_006.nii.gz"),
                          "--fixed-labels", str(lab / "hippocampus_001.nii.gz")])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["displacement.nii.gz", "figures", "metrics.json",
                                                     "report.html", "transform.h5", "warped.nii.gz",
                                                     "warped_labels.nii.gz"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["checkerboard.png", "deformation_grid.png",
                                                                   "difference.png"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "learned" and m["seconds"] > 0 and m["params"]["model"] == str(model)
    assert 0 <= m["jacobian"]["folding_fraction"] < 0.01
    assert set(m["dice"]["per_label"]) == {"1", "2"} and 0 <= m["dice"]["mean_after"] <= 1
    fixed = read(img / "hippocampus_001_0000.nii.gz")
    assert read(out / "warped_labels.nii.gz").spatial_shape == fixed.spatial_shape
    field = sitk.ReadImage(str(out / "displacement.nii.gz"))
    assert field.GetSize()[::-1] == fixed.spatial_shape and field.GetNumberOfComponentsPerPixel() == 3
    assert "learned" in (out / "report.html").read_text()
    sitk.ReadTransform(str(out / "transform.h5"))


@pytest.mark.realdata
def test_cli_register_learned_pairs_loads_the_model_once(hippo_model, tmp_path, capsys, monkeypatch):
    root, model = hippo_model
    calls = []
    original = LearnedRegistration.load.__func__

    def counting_load(cls, *args, **kwargs):
        calls.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(LearnedRegistration, "load", classmethod(counting_load))
    pairs = tmp_path / "pairs.csv"
    i, la = root / "imagesTr", root / "labelsTr"
    pairs.write_text("fixed,moving,moving_labels,fixed_labels\n"
                     f"{i}/hippocampus_001_0000.nii.gz,{i}/hippocampus_006_0000.nii.gz,"
                     f"{la}/hippocampus_006.nii.gz,{la}/hippocampus_001.nii.gz\n"
                     f"{i}/hippocampus_006_0000.nii.gz,{i}/hippocampus_011_0000.nii.gz,,\n")
    out = tmp_path / "many"
    code = cli_main.main(["register", "--pairs", str(pairs), "-o", str(out), "--method", "learned", "--model",
                          str(model), "-q"])
    assert code == 0, capsys.readouterr().err
    assert len(calls) == 1
    doc = json.loads((out / "summary.json").read_text())
    assert doc["n_pairs"] == 2 and doc["settings"]["model"] == str(model)
    assert [r["method"] for r in doc["rows"]] == ["learned", "learned"]
    assert doc["rows"][0]["dice_after"] is not None and doc["rows"][1]["dice_after"] is None
    for name in ("hippocampus_001_0000__hippocampus_006_0000", "hippocampus_006_0000__hippocampus_011_0000"):
        assert (out / name / "displacement.nii.gz").is_file() and (out / name / "transform.h5").is_file()


# ---- the command line: bad inputs, one line, exit 2, nothing written ---------------------------------------------
@pytest.fixture(scope="module")
def pair_files(tmp_path_factory, nnunet_folder):
    d = tmp_path_factory.mktemp("pair")
    files = {"fixed": nnunet_folder / "imagesTr" / "case0_0000.nii.gz",
             "moving": nnunet_folder / "imagesTr" / "case1_0000.nii.gz",
             "mask": nnunet_folder / "labelsTr" / "case0.nii.gz", "flat": d / "flat.nii.gz"}
    write(Image.from_array(np.random.default_rng(0).random((16, 16)).astype(np.float32)), files["flat"])
    return {k: str(v) for k, v in files.items()}


def test_cli_register_learned_bad_inputs(pair_files, tiny_model, tmp_path, capsys):
    from medimg.zoo import ZOO

    f, m = pair_files["fixed"], pair_files["moving"]
    out = tmp_path / "out"
    model = str(tiny_model[0])
    cases = [
        (["--method", "learned"], ("--model",)),
        (["--method", "affine", "--model", model], ("--model", "learned")),
        (["--method", "rigid", "--prealign", "center"], ("--prealign",)),
        (["--method", "learned", "--model", str(ZOO["hippocampus"].path)], ("not a registration model",)),
        (["--method", "learned", "--model", str(tmp_path / "no_such_model")], ("no such model",)),
        (["--method", "learned", "--model", str(tmp_path)], ("not a model folder",)),
        (["--method", "learned", "--model", model, "--fixed-mask", pair_files["mask"]], ("--fixed-mask",)),
        (["--method", "learned", "--model", model, "--moving-mask", pair_files["mask"]], ("--moving-mask",)),
        (["--method", "learned", "--model", model, "--metric", "ncc"], ("--metric", "classical")),
        (["--method", "learned", "--model", model, "--iterations", "5"], ("--iterations",)),
    ]
    for extra, words in cases:
        _error(["register", f, m, "-o", str(out)] + extra, capsys, *words)
        _nothing_written(out)
    # a 2D fixed image with a 3D model: refused when the pair is registered, before any output appears
    _error(["register", pair_files["flat"], m, "-o", str(out), "--method", "learned", "--model", model], capsys,
           "3D")
    _nothing_written(out)


def test_cli_train_register_bad_inputs(plain_folder, tmp_path, capsys):
    out = tmp_path / "model"
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(plain_folder / "case0.nii.gz", one)
    not_json = tmp_path / "splits.json"
    not_json.write_text("folds: [0, 1]\n")
    seg_plan = tmp_path / "seg_model"
    seg_plan.mkdir()
    from medimg.zoo import ZOO

    shutil.copy(ZOO["hippocampus"].path / "plan.json", seg_plan)
    base = ["train", "register", str(plain_folder), "--iterations", "1"] + TINY_CLI
    cases = [
        (["train", "register", str(one), "-o", str(out), "--iterations", "1"], out, ("not a registration dataset",)),
        (base + ["-o", str(out), "--splits", str(not_json)], out, ("--splits",)),
        (base + ["-o", str(out), "--set", "unknown_field=1"], out, ("unknown_field",)),
        (base + ["-o", str(out), "--set", "grid=[15,16,16]"], out, ("grid",)),
        (base + ["-o", str(out), "--group-by", "^(\\d+)_"], out, ("--group-by",)),
        (base + ["-o", str(out), "--cascade", "otsu"], out, ("--cascade",)),
        (base + ["-o", str(out), "--fold", "7"], out, ("--fold",)),
        (base + ["-o", str(out), "--iterations", "0"], out, ("--iterations",)),
    ]
    for argv, folder, words in cases:
        _error(argv, capsys, *words)
        _nothing_written(folder)
    # a folder holding a segmentation model is not overwritten by a registration plan
    _error(base + ["-o", str(seg_plan)], capsys, "another kind of model")
    assert sorted(p.name for p in seg_plan.iterdir()) == ["plan.json"]
    assert json.loads((seg_plan / "plan.json").read_text()) == json.loads(
        (ZOO["hippocampus"].path / "plan.json").read_text())

"""Tests for `medimg register` and `medimg warp` on the real 2D head pair (ITKElastix examples)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.cli import main as cli_main
from medimg.io import read, write
from medimg.io.itk_formats import read_itk
from medimg.metrics.registration import jacobian_statistics
from medimg.testing import one_line_error, require_data

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)

PAIR = ("registration_2d_ct_itkelastix", "examples", "data")


@pytest.fixture(scope="module")
def files():
    root = require_data(*PAIR)
    return {k: str(root / f"CT_2D_head_{k}.mha") for k in ("fixed", "moving", "fixed_mask", "moving_mask")}


def test_register_rigid_writes_the_output_contract_and_warp_reapplies_it(files, tmp_path, capsys):
    out = tmp_path / "rigid"
    code = cli_main.main(["register", files["fixed"], files["moving"], "-o", str(out), "--method", "rigid",
                          "--labels", files["moving_mask"], "--fixed-labels", files["fixed_mask"]])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["figures", "metrics.json", "report.html", "transform.tfm",
                                                     "warped.nii.gz", "warped_labels.nii.gz"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "rigid" and m["metric"] == "mattes" and m["seconds"] > 0
    assert m["metric_after"] < m["metric_before"]
    # measured: mask Dice 0.9788 -> 0.9820
    assert m["dice"]["per_label"]["1"]["after"] > m["dice"]["per_label"]["1"]["before"]
    assert m["params"]["seed"] == 0 and "jacobian" not in m
    warped_labels = read(out / "warped_labels.nii.gz")
    assert set(np.unique(warped_labels.array)) <= {0, 1}
    again = tmp_path / "again.nii.gz"
    assert cli_main.main(["warp", files["moving_mask"], str(out / "transform.tfm"), "--reference",
                          files["fixed"], "-o", str(again), "--labels"]) == 0
    assert np.array_equal(read(again).array, warped_labels.array)


def test_register_demons_writes_a_displacement_field_and_jacobian(files, tmp_path, capsys):
    out = tmp_path / "demons"
    code = cli_main.main(["register", files["fixed"], files["moving"], "-o", str(out), "--method",
                          "diffeomorphic-demons", "--levels", "2,1", "--iterations", "20", "-q"])
    assert code == 0, capsys.readouterr().err
    assert {"transform.h5", "displacement.nii.gz", "warped.nii.gz", "metrics.json", "report.html",
            "figures"} == {p.name for p in out.iterdir()}
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "diffeomorphic_demons" and m["transform_type"] == "CompositeTransform"
    field = read_itk(out / "displacement.nii.gz")
    assert field.n_channels == 2 and field.spatial_shape == (1, 256, 256)
    stats = jacobian_statistics(np.asarray(field.voxels[:, 0], float), spacing_mm=(1.0, 1.0))
    assert stats["folding_fraction"] == pytest.approx(m["jacobian"]["folding_fraction"], abs=1e-9)
    assert 0 <= m["jacobian"]["folding_fraction"] < 0.01 and m["jacobian"]["std_log_jacobian"] > 0


def _fails(argv, capsys, *words):
    assert cli_main.main(argv) == 2
    return one_line_error(capsys.readouterr().err, *words)


def test_bad_inputs_are_one_line_exit_2_and_no_output(files, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["register", files["fixed"], files["moving"], "-o", str(out)]
    # labels on another grid
    small = tmp_path / "small_labels.nii.gz"
    lab = read(files["moving_mask"], kind="label")
    write(lab.replace(voxels=lab.voxels[:, :, :100, :100]), small)
    _fails(base + ["--labels", str(small)], capsys, "--labels", "grid", str(small))
    # images of different dimension
    vol = tmp_path / "vol.nii.gz"
    write(read(files["moving"]).replace(voxels=np.repeat(read(files["moving"]).voxels, 3, axis=1)), vol)
    _fails(["register", files["fixed"], str(vol), "-o", str(out)], capsys, "dimensions", "moving")
    # non-overlapping fields of view
    far = tmp_path / "far.nii.gz"
    mov = read(files["moving"])
    write(mov.replace(geometry=mov.geometry.replace(origin=(4000.0, 0.0, 0.0))), far)
    _fails(["register", files["fixed"], str(far), "-o", str(out), "--init", "none"], capsys, "overlap", "moments")
    # a transform file from another tool
    fsl = tmp_path / "flirt.mat"
    fsl.write_text("1 0 0 2\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    _fails(["warp", files["moving"], str(fsl), "--reference", files["fixed"], "-o", str(tmp_path / "w.nii.gz")],
           capsys, str(fsl), "ITK transform")
    _fails(base + ["--fixed-labels", files["fixed_mask"]], capsys, "--labels")
    assert not out.exists() and not (tmp_path / "w.nii.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

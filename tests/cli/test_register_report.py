"""Tests for the quality checks of `medimg register`: report.html, figures, inverse consistency, landmark TRE."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.classical.registration import checkerboard, inverse_consistency
from medimg.cli import main as cli_main
from medimg.core.image import Image
from medimg.testing import one_line_error, require_data

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)

PAIR = ("registration_2d_ct_itkelastix", "examples", "data")
#: the known transform that makes the moving image: moving(x) = fixed(K(x)), so moving landmarks are K^-1(f)
K = sitk.Euler2DTransform((127.5, 127.5), 0.06, (4.0, -3.0))
FIXED_INDICES = [(80, 90), (170, 90), (128, 60), (128, 200), (95, 165), (165, 170)]


@pytest.fixture(scope="module")
def data():
    return require_data(*PAIR)


@pytest.fixture(scope="module")
def known(data, tmp_path_factory):
    """The fixed head CT, a moving image made from it by K, and landmarks in both (fixed: header, moving: none)."""
    root = tmp_path_factory.mktemp("known")
    fixed = sitk.ReadImage(str(data / "CT_2D_head_fixed.mha"))
    moving = sitk.Resample(fixed, fixed, K, sitk.sitkLinear, -1024.0)
    sitk.WriteImage(moving, str(root / "moving.mha"))
    f_pts = [fixed.TransformContinuousIndexToPhysicalPoint(idx) for idx in FIXED_INDICES]
    inv = K.GetInverse()
    m_pts = [inv.TransformPoint(p) for p in f_pts]
    (root / "fixed.csv").write_text("name,x,y,z\n" + "".join(f"p{i},{x},{y},0\n" for i, (x, y) in
                                                             enumerate(f_pts)))
    (root / "moving.csv").write_text("".join(f"{x},{y},0.0\n" for x, y in m_pts))
    return {"fixed": str(data / "CT_2D_head_fixed.mha"), "moving": str(root / "moving.mha"),
            "fixed_lm": str(root / "fixed.csv"), "moving_lm": str(root / "moving.csv"), "root": root}


def test_rigid_report_figures_tre_and_inverse_consistency(known, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli_main.main(["register", known["fixed"], known["moving"], "-o", str(out), "--method", "rigid",
                          "--levels", "2,1", "--fixed-landmarks", known["fixed_lm"],
                          "--moving-landmarks", known["moving_lm"]])
    assert code == 0, capsys.readouterr().err
    assert "TRE over 6 landmarks" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["checkerboard.png", "difference.png"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    for title in ("Inputs", "Method and settings", "Metrics", "Inverse consistency", "Target registration error"):
        assert f"<h2>{title}</h2>" in html
    m = json.loads((out / "metrics.json").read_text())
    assert "report.html" in m["outputs"] and "figures" in m["outputs"]
    tre = m["tre"]
    # measured: mean TRE 5.56 mm -> 0.26 mm, max 0.32 mm (moving = fixed moved by the known rigid K)
    assert tre["n"] == 6 and len(tre["per_landmark"]) == 6
    assert tre["before_mm"]["mean"] > 5.0
    assert tre["after_mm"]["mean"] < 0.5 and tre["after_mm"]["max"] < 1.0
    assert tre["after_mm"]["median"] <= tre["after_mm"]["max"]
    assert m["inverse_consistency"]["max_mm"] < 1e-3
    assert m["inverse_consistency"]["inverse"] == "exact inverse"


def test_demons_report_has_a_deformation_grid_and_small_inverse_consistency(data, tmp_path, capsys):
    out = tmp_path / "demons"
    code = cli_main.main(["register", str(data / "CT_2D_head_fixed.mha"), str(data / "CT_2D_head_moving.mha"),
                          "-o", str(out), "--method", "diffeomorphic-demons", "--levels", "2,1",
                          "--iterations", "10", "--labels", str(data / "CT_2D_head_moving_mask.mha"),
                          "--fixed-labels", str(data / "CT_2D_head_fixed_mask.mha"), "-q"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["checkerboard.png", "deformation_grid.png",
                                                                   "difference.png"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "<h2>Jacobian determinant</h2>" in html and "mean Dice after" in html
    ic = json.loads((out / "metrics.json").read_text())["inverse_consistency"]
    # measured: mean 0.06 mm, max ~3 mm (at the border of the field)
    assert np.isfinite(ic["max_mm"]) and 0 < ic["mean_mm"] < 0.5 and ic["p95_mm"] < 1.0
    assert "InvertDisplacementField" in ic["inverse"]


def test_checkerboard_and_inverse_consistency_on_tiny_images():
    a, b = np.zeros((2, 4, 6)), np.ones((2, 4, 6))
    board = checkerboard(a, b, squares=2)
    assert board.shape == (2, 4, 6) and board[0, 0, 0] == 0 and board[0, 0, 3] == 1 and board[1, 0, 0] == 1
    ref = Image.from_array(np.zeros((6, 7, 8), np.float32), spacing=(1.0, 2.0, 3.0))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.1, 0.1, 0, 0, 0.9, 0.05, 0, 0, 1.2))
    affine.SetTranslation((2.0, -1.0, 0.5))
    assert inverse_consistency(affine, ref)["max_mm"] < 1e-9


def _fails(argv, capsys, *words):
    assert cli_main.main(argv) == 2
    return one_line_error(capsys.readouterr().err, *words)


def test_bad_landmark_files_are_one_line_exit_2_and_no_output(known, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["register", known["fixed"], known["moving"], "-o", str(out), "--fixed-landmarks", known["fixed_lm"]]
    cases = {
        "fewer.csv": ("1,2,0\n3,4,0\n", "different numbers of landmarks"),
        "text.csv": ("1,2,0\n3,four,0\n" * 3, "not a number"),
        "columns.csv": ("1,2,0,7\n" * 6, "4 columns"),
    }
    for name, (text, words) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        _fails(base + ["--moving-landmarks", str(path)], capsys, "--moving-landmarks", str(path), words)
    _fails(base, capsys, "--moving-landmarks")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"fixed,moving\n{known['fixed']},{known['moving']}\n")
    _fails(["register", "--pairs", str(pairs), "-o", str(out), "--fixed-landmarks", known["fixed_lm"],
            "--moving-landmarks", known["moving_lm"]], capsys, "--fixed-landmarks", "--pairs")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

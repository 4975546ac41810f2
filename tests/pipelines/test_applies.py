"""Issue 12 item 2: each pipeline's applies rule, the automatic choice and the refusal, on real data.

The rules' thresholds were chosen on the even-indexed images (sorted file names) of each data set; the tests
below use odd-indexed images where they pick from a folder (benchmarks/pipeline_choice.py measures whole folders).
"""

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.core import Image, InvalidParameterError
from medimg.io import read
from medimg.pipelines import PIPELINES, choose_pipeline, run_pipeline
from medimg.pipelines.base import APPLIES, Applicability, register
from medimg.pipelines.choose import applicability
from medimg.testing import one_line_error, require_data

REFUSAL = "no automatic pipeline for"


def _odd(paths, n):
    return sorted(paths)[1::2][:n]


def _busi(n=3):
    root = require_data("breast_ultrasound_busi")
    return [p for sub in ("benign", "malignant", "normal") for p in _odd((root / sub).glob("*.png"), n)]


def _bccd(n=4):
    return _odd(require_data("blood_cells_bccd", "JPEGImages").glob("*.jpg"), n)


@functools.lru_cache(maxsize=1)
def _dsb_by_type():
    """DSB images grouped by the BENCHMARKS.md rule (benchmarks/classical.py nuclei_type), odd indices only."""
    root = require_data("nuclei_dsb2018", "images")
    groups: dict[str, list[Path]] = {"fluorescence": [], "bright-field": [], "colour": []}
    for p in _odd(root.glob("*.png"), 10_000):
        v = read(p).voxels[:, 0].astype(np.float32)
        if v.shape[0] >= 3 and float(np.abs(v[0] - v[1]).mean() + np.abs(v[1] - v[2]).mean()) > 1.0:
            groups["colour"].append(p)
        else:
            grey = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2] if v.shape[0] >= 3 else v[0]
            groups["fluorescence" if float(np.median(grey)) < 100 else "bright-field"].append(p)
    return groups


def test_every_pipeline_declares_a_rule():
    assert set(APPLIES) == set(PIPELINES) == {"ct_body", "hippocampus", "nuclei", "fetal_head"}
    a = Applicability(1.7, "x")
    assert a.confidence == 1.0 and a.applies
    assert not Applicability(0.9, "x", validated=False).applies
    assert not Applicability(0.2, "x").applies


def test_register_without_applies_is_never_chosen():
    """The decorator stays compatible: a pipeline without a rule registers and is only run by name."""
    try:
        @register("_test_only", "test pipeline")
        def _p(image):  # pragma: no cover - never run
            raise AssertionError

        assert "_test_only" in PIPELINES and "_test_only" not in APPLIES
        assert applicability(Image.from_array(np.zeros((8, 8), np.uint8)))["_test_only"].confidence == 0.0
    finally:
        PIPELINES.pop("_test_only", None)


def _shares(paths):
    """Share of ``paths`` sent to each pipeline by the automatic choice (refused: None)."""
    counts: dict[str | None, int] = {}
    for path in paths:
        try:
            name = choose_pipeline(read(path))[0]
        except InvalidParameterError as exc:
            assert REFUSAL in str(exc) and "--pipeline NAME" in str(exc) and "--classifier MODEL" in str(exc)
            name = None
        counts[name] = counts.get(name, 0) + 1
    return {k: v / len(paths) for k, v in counts.items()}


def test_busi_and_bccd_refused_by_the_automatic_choice():
    """Before: every one went to nuclei. On all odd-indexed images: BUSI 98 % refused, BCCD 100 %."""
    busi = _shares(_busi(10))
    assert busi.get(None, 0) >= 0.9 and busi.get("nuclei", 0) <= 0.1, busi
    assert _shares(_bccd(20)) == {None: 1.0}


@pytest.mark.parametrize("which", ["busi", "bccd"])
def test_cli_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, which):
    path = (_busi(1) if which == "busi" else _bccd(1))[0]
    out = tmp_path / "out"
    assert main(["analyze", str(path), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    line = one_line_error(captured.err)
    assert REFUSAL in line and "use --pipeline NAME or a model (--pipeline none --classifier MODEL)" in line
    assert "nuclei" not in captured.out and not out.exists()
    assert not list(tmp_path.iterdir())


def test_hc18_goes_to_fetal_head():
    root = require_data("fetal_head_hc18", "images")
    shares = _shares(_odd(root.glob("*.png"), 10_000)[::10])
    assert shares.get("fetal_head", 0) >= 0.85 and shares.get("nuclei", 0) <= 0.1, shares


def test_dsb_fluorescence_goes_to_nuclei_and_stained_or_bright_field_is_refused():
    groups = _dsb_by_type()
    shares = _shares(groups["fluorescence"][::8])
    assert shares.get("nuclei", 0) >= 0.85, shares
    assert groups["colour"] and groups["bright-field"]
    for path in groups["colour"][::6] + groups["bright-field"]:
        assert not applicability(read(path))["nuclei"].validated, path.name
    assert _shares(groups["colour"][::6] + groups["bright-field"]) == {None: 1.0}


def test_shipped_samples_go_to_their_pipelines():
    from medimg.pipelines.demo import sample_path

    assert choose_pipeline(read(sample_path()))[0] == "ct_body"
    hippo = Path(__import__("medimg").__file__).parent / "data" / "hippocampus_sample" / "hippocampus_001.nii.gz"
    assert choose_pipeline(read(hippo))[0] == "hippocampus"


def test_forced_pipeline_outside_validation_warns_in_report_json_and_stderr(tmp_path, capsys):
    path = _busi(1)[0]
    out = tmp_path / "forced"
    assert main(["analyze", str(path), "-o", str(out), "--pipeline", "nuclei"]) == 0
    err = capsys.readouterr().err
    payload = json.loads((out / "measurements.json").read_text())
    assert payload["pipeline"] == "nuclei"
    assert payload["warnings"] and "outside what it was validated on" in payload["warnings"][0]
    assert payload["parameters"]["applicability"]["validated"] is False
    html = (out / "report.html").read_text()
    assert "class='warning'" in html and "outside what it was validated on" in html
    assert "warning: the nuclei pipeline was forced" in err
    # -q: the same files, nothing on stderr
    assert main(["analyze", str(path), "-o", str(tmp_path / "q"), "--pipeline", "nuclei", "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads((tmp_path / "q" / "measurements.json").read_text())["warnings"]


def test_forced_pipeline_inside_validation_has_no_warning():
    path = _dsb_by_type()["fluorescence"][0]
    result = run_pipeline(read(path), "nuclei")
    assert result.warnings == [] and result.parameters["applicability"]["validated"] is True

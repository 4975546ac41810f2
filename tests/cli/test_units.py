"""Issue 12 item 4: 2D results without a known pixel size are in px / px2 (never mm, mm2 or mL), and the spacing
warning appears once, only when the 1 mm stand-in was really used, and never with -q."""

import json

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.io import read
from medimg.measure.table import measure_labels, spacing_unknown, to_pixel_units
from medimg.testing import require_data

WARNING = "no pixel spacing in"


def _fluorescence_png():
    root = require_data("nuclei_dsb2018", "images")
    for path in sorted(root.glob("*.png"))[1::2]:
        img = read(path)
        if img.n_channels == 1 and float(np.median(img.voxels)) < 30 and max(img.spatial_shape) <= 360:
            return path
    raise AssertionError("no small fluorescence image found")


def _keys(payload):
    return {k for r in payload["measurements"] for k in r}


def test_analyze_png_with_pixel_spacing_is_in_mm_without_warning(tmp_path, capsys):
    out = tmp_path / "mm"
    assert main(["analyze", str(_fluorescence_png()), "-o", str(out), "--pixel-spacing", "0.5"]) == 0
    printed = capsys.readouterr()
    assert WARNING not in printed.err and "1 mm" not in printed.err and "1 mm" not in printed.out
    payload = json.loads((out / "measurements.json").read_text())
    assert payload["pipeline"] == "nuclei"
    keys = _keys(payload)
    assert "area_mm2" in keys and "perimeter_mm" in keys and not any(k.endswith(("_px", "_px2")) for k in keys)
    assert payload["summary"]["size_unit"] == "mm2"
    assert not any(WARNING in n for n in payload["notes"])


def test_analyze_png_without_pixel_spacing_is_in_px_with_one_warning(tmp_path, capsys):
    out = tmp_path / "px"
    assert main(["analyze", str(_fluorescence_png()), "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.err.count(WARNING) == 1 and "1 mm" not in printed.err
    payload = json.loads((out / "measurements.json").read_text())
    keys = _keys(payload)
    assert "area_px2" in keys and "perimeter_px" in keys and "centroid_x_px" in keys
    assert not any(k.endswith(("_mm", "_mm2", "_ml")) for k in keys), sorted(keys)
    assert payload["summary"]["size_unit"] == "px2"
    assert any(WARNING in n for n in payload["notes"])
    header = (out / "measurements.csv").read_text().splitlines()[0]
    assert "area_px2" in header and "mm" not in header
    html = (out / "report.html").read_text()
    assert "area_px2" in html and "square pixels" in html and "area_mm2" not in html


def test_analyze_quiet_prints_no_spacing_warning(tmp_path, capsys):
    assert main(["analyze", str(_fluorescence_png()), "-o", str(tmp_path / "q"), "-q"]) == 0
    printed = capsys.readouterr()
    assert printed.err == "" and printed.out == ""


def test_measure_png_units_and_warning(tmp_path, capsys):
    root = require_data("fetal_head_hc18")
    img, mask = root / "images" / "002_HC.png", root / "masks" / "002_HC_Mask.png"
    assert main(["measure", str(img), str(mask), "--json", str(tmp_path / "px.json")]) == 0
    printed = capsys.readouterr()
    assert printed.err.count(WARNING) == 1
    data = json.loads((tmp_path / "px.json").read_text())
    assert data["units"] == "px" and "area_px2" in data["records"][0] and "area_mm2" not in data["records"][0]
    assert main(["measure", str(img), str(mask), "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["measure", str(img), str(mask), "--pixel-spacing", "0.1", "--json", str(tmp_path / "mm.json")]) == 0
    assert WARNING not in capsys.readouterr().err
    data = json.loads((tmp_path / "mm.json").read_text())
    assert data["units"] == "mm" and "area_mm2" in data["records"][0]


def test_library_measures_pixels_when_the_spacing_is_unknown():
    root = require_data("fetal_head_hc18")
    mask = read(root / "masks" / "002_HC_Mask.png", kind="label")
    assert spacing_unknown(mask)
    rec = measure_labels(mask)[0]
    assert "area_px2" in rec and "ellipse_circumference_px" in rec and "area_mm2" not in rec
    known = read(root / "masks" / "002_HC_Mask.png", kind="label", spacing=(0.1, 0.1))
    rec_mm = measure_labels(known)[0]
    assert rec_mm["area_mm2"] == rec["area_px2"] * 0.01
    assert measure_labels(mask, units="mm")[0]["area_mm2"] == rec["area_px2"]
    assert to_pixel_units({"size_unit": "mm2", "per_case": [{"area_mm2": 1}]}) == {
        "size_unit": "px2", "per_case": [{"area_px2": 1}]}


def test_segment_2d_reports_area_not_ml(tmp_path, capsys):
    png = _fluorescence_png()
    assert main(["segment", str(png), str(tmp_path / "a.png"), "--method", "otsu"]) == 0
    printed = capsys.readouterr()
    assert "px2" in printed.out and "mL" not in printed.out and printed.err.count(WARNING) == 1
    assert main(["segment", str(png), str(tmp_path / "b.png"), "--method", "otsu", "--pixel-spacing", "0.5"]) == 0
    printed = capsys.readouterr()
    assert "mm2" in printed.out and "mL" not in printed.out and WARNING not in printed.err
    assert main(["segment", str(png), str(tmp_path / "c.png"), "--method", "otsu", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_nuclei_count_does_not_depend_on_the_pixel_size():
    """The nuclei method works in pixels: a given pixel size changes the units, not the count (it did: the
    watershed depth was 1 mm whatever the pixel size)."""
    from medimg.pipelines import run_pipeline

    png = _fluorescence_png()
    px = run_pipeline(read(png), "nuclei")
    mm = run_pipeline(read(png, spacing=(0.1, 0.1)), "nuclei")
    assert px.summary["count"] == mm.summary["count"] > 0
    assert px.summary["size_unit"] == "px2" and mm.summary["size_unit"] == "mm2"
    assert mm.summary["size_max"] == pytest.approx(px.summary["size_max"] * 0.01)


def test_folder_of_pngs_applies_pixel_spacing_and_names_a_refused_case(tmp_path, capsys):
    import shutil

    folder = tmp_path / "cases"
    folder.mkdir()
    shutil.copy(_fluorescence_png(), folder / "a.png")
    assert main(["analyze", str(folder), "-o", str(tmp_path / "mm"), "--pixel-spacing", "0.5"]) == 0
    assert WARNING not in capsys.readouterr().err  # --pixel-spacing used to be ignored for folders
    payload = json.loads((tmp_path / "mm" / "measurements.json").read_text())
    assert "area_mm2" in _keys(payload) and payload["summary"]["per_case"][0]["size_unit"] == "mm2"
    assert main(["analyze", str(folder), "-o", str(tmp_path / "px")]) == 0
    assert capsys.readouterr().err.count(WARNING) == 1
    assert "area_px2" in _keys(json.loads((tmp_path / "px" / "measurements.json").read_text()))
    bccd = sorted(require_data("blood_cells_bccd", "JPEGImages").glob("*.jpg"))[1]
    shutil.copy(bccd, folder / "b.jpg")
    assert main(["analyze", str(folder), "-o", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "b.jpg" in err and "no automatic pipeline for" in err
    assert not (tmp_path / "no").exists()

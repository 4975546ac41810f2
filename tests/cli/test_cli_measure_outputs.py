"""`medimg measure --json A --csv B`: both outputs or neither (issue 12, item 13), on a real hippocampus case."""

import json

from medimg.cli.main import main
from medimg.testing import one_line_error, require_data


def _inputs():
    return (str(require_data("hippocampus", "imagesTr", "hippocampus_001_0000.nii.gz")),
            str(require_data("hippocampus", "labelsTr", "hippocampus_001.nii.gz")))


def test_a_bad_csv_path_leaves_no_json_behind(tmp_path, capsys):
    image, labels = _inputs()
    (tmp_path / "folder").mkdir()
    a = tmp_path / "A.json"
    assert main(["measure", image, labels, "--json", str(a), "--csv", str(tmp_path / "folder")]) == 2
    one_line_error(capsys.readouterr().err, "folder")
    assert not a.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]  # no temporary files either
    assert main(["measure", image, labels, "--json", str(a), "--csv", str(a)]) == 2
    one_line_error(capsys.readouterr().err, "same file")
    assert not a.exists()


def test_both_outputs_are_written_together(tmp_path, capsys):
    image, labels = _inputs()
    a, b = tmp_path / "A.json", tmp_path / "B.csv"
    assert main(["measure", image, labels, "--json", str(a), "--csv", str(b), "-q"]) == 0, capsys.readouterr().err
    records = json.loads(a.read_text())["records"]
    assert [r["label"] for r in records] == [1, 2]
    lines = b.read_text().splitlines()
    assert lines[0].startswith("label,") and len(lines) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.json", "B.csv"]

"""The one landmark reader (medimg.io.points): both layouts, cases, and one-line errors naming the option."""

import numpy as np
import pytest

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.io.points import read_landmarks


def _csv(tmp_path, text, name="lm.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_header_and_headerless_layouts_give_the_same_points(tmp_path):
    expected = np.array([[1.0, 2.0, 3.0], [-4.5, 5.0, 6.25]])
    with_header = read_landmarks(_csv(tmp_path, "\ufeffName,X,Y,Z\np1,1,2,3\n# comment\n\np2,-4.5,5,6.25\n"),
                                 parameter="--fixed-landmarks")
    without = read_landmarks(_csv(tmp_path, "1,2,3\n-4.5,5,6.25\n", "bare.csv"), parameter="--fixed-landmarks")
    for lm in (with_header, without):
        np.testing.assert_array_equal(lm.points, expected)
        assert lm.dim == 3 and lm.cases is None
        assert list(lm.by_case()) == [""]
    two_d = read_landmarks(_csv(tmp_path, "x,y\n1,2\n3,4\n", "2d.csv"), parameter="p")
    assert two_d.dim == 2 and two_d.points.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_case_column_groups_points_in_file_order(tmp_path):
    lm = read_landmarks(_csv(tmp_path, "case,x,y,z\nb,1,1,1\na,2,2,2\nb,3,3,3\n"), parameter="gt_csv",
                        require_case=True)
    assert lm.cases == ("b", "a", "b")
    groups = lm.by_case()
    assert list(groups) == ["b", "a"]
    assert groups["b"].tolist() == [[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]] and groups["a"].tolist() == [[2.0, 2.0, 2.0]]


@pytest.mark.parametrize("text, words", [
    ("# only a comment\n\n", "has no rows"),
    ("x,y,z\n", "has no rows"),
    ("a,b,c\n1,2,3\n", "no x and y columns"),
    ("1,2,0\n3,four,0\n", "line 2: a coordinate is not a number"),
    ("1,2,nan\n", "line 1: a coordinate is not a number"),
    ("1,2,0,7\n", "line 1: 4 columns"),
    ("1,2,0\n1,2\n", "line 2: 2 columns"),
    ("x,y,z\n1,2\n", "line 2: too few columns"),
])
def test_bad_files_are_one_line_errors_naming_the_option_and_file(tmp_path, text, words):
    path = _csv(tmp_path, text)
    with pytest.raises(InvalidParameterError) as err:
        read_landmarks(path, parameter="--moving-landmarks")
    message = str(err.value)
    assert words in message and "--moving-landmarks" in message and str(path) in message
    assert "\n" not in message


def test_require_case(tmp_path):
    with pytest.raises(InvalidParameterError, match="no case column"):
        read_landmarks(_csv(tmp_path, "x,y,z\n1,2,3\n"), parameter="pred_csv", require_case=True)
    with pytest.raises(InvalidParameterError, match="no case column"):
        read_landmarks(_csv(tmp_path, "1,2,3\n", "bare.csv"), parameter="pred_csv", require_case=True)
    with pytest.raises(InvalidParameterError, match="line 3: empty case id"):
        read_landmarks(_csv(tmp_path, "case,x,y\na,1,2\n,3,4\n", "empty.csv"), parameter="pred_csv",
                       require_case=True)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ImageReadError):
        read_landmarks(tmp_path / "absent.csv", parameter="p")
    with pytest.raises(ImageReadError, match="empty"):
        read_landmarks(_csv(tmp_path, "", "empty.csv"), parameter="p")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ImageReadError, match="cannot read the landmark file"):
        read_landmarks(binary, parameter="p")

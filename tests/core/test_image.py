import numpy as np
import pytest
import SimpleITK as sitk

from medimg.core import Geometry, GeometryMismatchError, Image, InvalidParameterError, Kind, MedimgError, Space
from medimg.core.geometry import is_oblique, orientation_code
from medimg.io.sitk_bridge import from_sitk, to_sitk
from medimg.testing import label_phantom, oblique_direction, phantom


def test_from_array_shapes():
    assert Image.from_array(np.zeros((5, 6))).shape == (1, 1, 5, 6)
    assert Image.from_array(np.zeros((4, 5, 6))).shape == (1, 4, 5, 6)
    assert Image.from_array(np.zeros((2, 4, 5, 6))).shape == (2, 4, 5, 6)
    rgb = Image.from_array(np.zeros((5, 6, 3), np.uint8), channel_axis=-1)
    assert rgb.shape == (3, 1, 5, 6) and rgb.is_2d
    with pytest.raises(InvalidParameterError, match="array"):
        Image.from_array(np.zeros((1, 2, 3, 4, 5)))


def test_two_value_spacing_for_2d():
    img = Image.from_array(np.zeros((5, 6)), spacing=(0.3, 0.4))
    assert img.spacing == (0.3, 0.4, 1.0)


def test_image_is_immutable_and_copied():
    arr = np.zeros((3, 4, 5), np.float32)
    img = Image.from_array(arr)
    arr[0, 0, 0] = 7
    assert img.voxels[0, 0, 0, 0] == 0
    with pytest.raises(ValueError):
        img.voxels[0, 0, 0, 0] = 1
    with pytest.raises(Exception):
        img.kind = Kind.LABEL  # frozen dataclass
    with pytest.raises(TypeError):
        img.metadata["x"] = 1


def test_derive_records_history_and_leaves_input():
    img = phantom()
    out = img.derive(img.voxels * 2, operation="double", params={"factor": np.float64(2.0), "axes": (1, 2)})
    assert img.history == ()
    assert [op.name for op in out.history] == ["double"]
    assert out.history[0].params == {"factor": 2.0, "axes": [1, 2]}
    assert '"double"' in out.history_json()


def test_geometry_validation_messages_name_parameter():
    with pytest.raises(InvalidParameterError, match="spacing"):
        Geometry(spacing=(1, 0, 1))
    with pytest.raises(InvalidParameterError, match="spacing"):
        Geometry(spacing=(1, 1))
    with pytest.raises(InvalidParameterError, match="direction"):
        Geometry(direction=np.ones((3, 3)))
    with pytest.raises(InvalidParameterError, match="origin"):
        Geometry(origin=(0, np.nan, 0))


def test_error_message_is_one_line_with_fix():
    err = MedimgError("bad thing\nhappened", path="/x/y.nii", expected="A", found="B", fix="do C")
    text = str(err)
    assert "\n" not in text
    assert text.startswith("'/x/y.nii': bad thing happened; expected A, found B. Fix: do C")


def test_geometry_matches_sitk_index_to_physical():
    img = phantom()
    s = to_sitk(img)
    for idx in [(0, 0, 0), (3, 5, 7), (23, 19, 11)]:
        np.testing.assert_allclose(img.geometry.index_to_physical(idx), s.TransformIndexToPhysicalPoint(idx))
    pt = img.geometry.index_to_physical((2.5, 3.5, 4.5))
    np.testing.assert_allclose(img.geometry.physical_to_index(pt), (2.5, 3.5, 4.5), atol=1e-9)


def test_orientation_code_matches_sitk():
    for d in [np.eye(3), np.diag([-1, -1, 1]), oblique_direction(30), np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]])]:
        d = np.asarray(d, float)
        expected = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(tuple(d.ravel()))
        assert orientation_code(d) == expected
    assert orientation_code(np.eye(3), Space.RAS) == "RAS"
    assert is_oblique(oblique_direction(20)) and not is_oblique(np.eye(3))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
def test_sitk_round_trip_keeps_geometry_and_voxels(dtype):
    img = phantom(dtype=dtype)
    back = from_sitk(to_sitk(img))
    img.check_same_grid(back)
    np.testing.assert_array_equal(back.voxels, img.voxels)


def test_sitk_round_trip_multichannel_and_2d():
    img = phantom(channels=3)
    back = from_sitk(to_sitk(img))
    assert back.shape == img.shape
    np.testing.assert_array_equal(back.voxels, img.voxels)
    flat = Image.from_array(np.arange(30, dtype=np.float32).reshape(5, 6), spacing=(0.5, 0.25), origin=(1, 2, 0))
    s = to_sitk(flat)
    assert s.GetDimension() == 2 and s.GetSpacing() == (0.5, 0.25)
    back = from_sitk(s)
    flat.check_same_grid(back)


def test_check_same_grid_names_the_field():
    a = phantom()
    b = a.replace(geometry=a.geometry.replace(origin=(0, 0, 0)))
    with pytest.raises(GeometryMismatchError, match="origin"):
        a.check_same_grid(b)
    c = label_phantom((12, 20, 25))
    with pytest.raises(GeometryMismatchError, match="size"):
        a.check_same_grid(c)
    a.check_same_grid(label_phantom())  # same grid: no error


def test_rejects_non_numeric_and_wrong_geometry():
    with pytest.raises(InvalidParameterError):
        Image(voxels=np.array([[[["a"]]]], dtype=object))
    with pytest.raises(InvalidParameterError, match="geometry"):
        Image(voxels=np.zeros((1, 1, 2, 2)), geometry="nope")

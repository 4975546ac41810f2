"""medimg.io.read of ITK vector NIfTI files (x, y, z, 1, c), e.g. the displacement field of `medimg register`."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medimg.classical.registration import displacement_field
from medimg.cli import main as cli_main
from medimg.core.image import Image
from medimg.io import read, write
from medimg.io.itk_formats import read_itk
from medimg.io.sitk_bridge import to_sitk
from medimg.testing import require_data

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _field(shape, spacing, direction):
    ref = Image.from_array(np.zeros(shape, np.float32), spacing=spacing, origin=(3.0, -7.5, 12.0 if len(shape) == 3
                           else 0.0), direction=direction)
    dim = 2 if ref.is_2d else 3
    tx = sitk.AffineTransform(dim)
    tx.SetMatrix(list((np.eye(dim) + 0.05 * np.arange(dim * dim).reshape(dim, dim) / dim ** 2).ravel()))
    tx.SetTranslation([1.5, -2.0, 0.25][:dim])
    return displacement_field(tx, ref)


@pytest.mark.parametrize("shape, spacing, direction", [
    ((5, 6, 7), (0.8, 1.1, 2.5), np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])),
    ((6, 7), (0.7, 1.3), None),
])
def test_itk_vector_nifti_reads_as_channels_like_read_itk(tmp_path, shape, spacing, direction):
    field = _field(shape, spacing, direction)
    path = tmp_path / "displacement.nii.gz"
    sitk.WriteImage(to_sitk(field), str(path), useCompression=True)  # as `medimg register` writes it
    hdr = nib.load(path).header
    assert int(hdr["intent_code"]) == 1007 and hdr["dim"][0] == 5  # ITK's vector layout (x, y, z, 1, c)
    got = read(path)
    ref = read_itk(path)
    assert got.n_channels == field.n_channels == (2 if len(shape) == 2 else 3)
    assert got.spatial_shape == field.spatial_shape
    np.testing.assert_allclose(got.voxels, ref.voxels, atol=1e-6)
    np.testing.assert_allclose(got.voxels, field.voxels, atol=1e-5)  # components as written, no flip
    assert not got.geometry.differences(field.geometry)
    assert got.metadata["intent"] == "vector" and got.metadata["vector_components"] == got.n_channels


def test_scalar_and_4d_nifti_reads_are_unchanged(tmp_path):
    vol = Image.from_array(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), spacing=(1.0, 2.0, 3.0))
    write(vol, tmp_path / "s.nii.gz")
    back = read(tmp_path / "s.nii.gz")
    assert back.shape == (1, 4, 5, 6) and np.array_equal(back.voxels, vol.voxels) and "intent" not in back.metadata
    multi = vol.replace(voxels=np.stack([vol.voxels[0], vol.voxels[0] * 2]))
    write(multi, tmp_path / "m.nii.gz")
    assert np.array_equal(read(tmp_path / "m.nii.gz").voxels, multi.voxels)
    # a real 5D series (several time points of vectors) is still refused with one clear error
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5, 2, 3), np.float32), np.eye(4)), tmp_path / "t.nii.gz")
    with pytest.raises(OSError, match="dimensions"):
        read(tmp_path / "t.nii.gz")


@pytest.mark.realdata
def test_register_displacement_field_reads_with_medimg_read_and_info(tmp_path, capsys):
    root = require_data("hippocampus")
    fixed = root / "imagesTr" / "hippocampus_001_0000.nii.gz"
    moving = root / "imagesTr" / "hippocampus_006_0000.nii.gz"
    out = tmp_path / "reg"
    assert cli_main.main(["register", str(fixed), str(moving), "-o", str(out), "--method", "demons", "--metric",
                          "ncc", "--levels", "2,1", "--iterations", "10", "-q"]) == 0, capsys.readouterr().err
    field = read(out / "displacement.nii.gz")
    assert field.n_channels == 3 and field.spatial_shape == read(fixed).spatial_shape
    np.testing.assert_allclose(field.voxels, read_itk(out / "displacement.nii.gz").voxels, atol=1e-6)
    capsys.readouterr()
    assert cli_main.main(["info", str(out / "displacement.nii.gz")]) == 0
    assert "3 channel(s)" in capsys.readouterr().out

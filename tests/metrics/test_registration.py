"""TRE and Jacobian determinant statistics, checked against SimpleITK on a smooth field."""

import numpy as np
import pytest

from medimg.metrics import registration as reg


def _smooth_field(shape=(20, 24, 28), amp=(1.5, -2.0, 1.0)):
    z, y, x = np.meshgrid(*[np.linspace(0, 2 * np.pi, n) for n in shape], indexing="ij")
    return np.stack([amp[0] * np.sin(y) * np.cos(z), amp[1] * np.cos(x) * np.sin(z), amp[2] * np.sin(x + y)])


def test_jacobian_matches_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    u = _smooth_field()
    spacing = (1.2, 0.8, 2.0)
    ours = reg.jacobian_determinant(u, spacing_mm=spacing)
    field = sitk.GetImageFromArray(np.moveaxis(u, 0, -1), isVector=True)
    field.SetSpacing(spacing)
    ref = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    np.testing.assert_allclose(ours[1:-1, 1:-1, 1:-1], ref[1:-1, 1:-1, 1:-1], rtol=1e-4, atol=1e-4)


def test_statistics_and_folding():
    ident = np.zeros((3, 6, 7, 8))
    s = reg.jacobian_statistics(ident, spacing_mm=(1, 2, 3))
    assert s["mean"] == pytest.approx(1.0) and s["folding_fraction"] == 0.0 and s["std_log_jacobian"] == 0.0
    fold = np.zeros((2, 6, 10))
    fold[0] = -2.0 * np.arange(10)[None, :]  # ux decreases 2 mm per mm along x: det = -1 everywhere
    s = reg.jacobian_statistics(fold, spacing_mm=(1.0, 1.0))
    assert s["folding_fraction"] == 1.0 and s["mean"] == pytest.approx(-1.0)
    mask = np.zeros((6, 10), bool)
    mask[2:4, 3:5] = True
    assert reg.jacobian_statistics(fold, mask=mask)["n_folding"] == 4


def test_tre():
    a = np.array([[0.0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(reg.target_registration_error(a, a + [3, 4, 0]), [5, 5])
    np.testing.assert_allclose(reg.target_registration_error(a, a + [1, 0, 1], spacing_mm=(2, 1, 3)),
                               [np.sqrt(13)] * 2)

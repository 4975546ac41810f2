import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medimg.core.errors import InvalidParameterError
from medimg.infer import entropy, keep_largest_component


def _reference(labels, classes, connectivity=1):
    """Plain scipy: label each class, measure every component with ndimage.sum, keep the biggest."""
    out = labels.copy()
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    for c in classes:
        comp, n = ndimage.label(labels == c, structure=structure)
        if n < 2:
            continue
        sizes = ndimage.sum(np.ones_like(comp), comp, index=np.arange(1, n + 1))
        keep = 1 + int(np.argmax(sizes))
        out[(comp > 0) & (comp != keep)] = 0
    return out


@pytest.mark.parametrize("shape", [(40, 50), (20, 24, 28)])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_keep_largest_component_matches_scipy_reference(shape, connectivity):
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    labels = np.digitize(smooth, np.quantile(smooth, [0.4, 0.6, 0.8])).astype(np.int16)
    before = labels.copy()
    out = keep_largest_component(labels, [1, 3], connectivity=connectivity)
    np.testing.assert_array_equal(out, _reference(labels, [1, 3], connectivity))
    np.testing.assert_array_equal(labels, before)
    assert out.dtype == labels.dtype
    np.testing.assert_array_equal(out[labels == 2], 2)  # classes not listed are left alone
    for c in (1, 3):
        assert ndimage.label(out == c, ndimage.generate_binary_structure(len(shape), connectivity))[1] <= 1


def test_keep_largest_component_simple_cases():
    lab = np.zeros((6, 6), np.uint8)
    lab[0, 0] = 1
    lab[3:5, 3:5] = 1
    out = keep_largest_component(lab, [1, 2])
    assert out[0, 0] == 0 and out[3:5, 3:5].all()
    # absent class, empty map
    np.testing.assert_array_equal(keep_largest_component(np.zeros((3, 3), int), [1]), 0)
    # diagonal neighbours join only with full connectivity
    diag = np.eye(3, dtype=np.int8)
    assert keep_largest_component(diag, [1]).sum() == 1
    np.testing.assert_array_equal(keep_largest_component(diag, [1], connectivity=2), diag)


def test_keep_largest_component_errors():
    with pytest.raises(InvalidParameterError, match="labels"):
        keep_largest_component(np.zeros((3, 3)), [1])
    with pytest.raises(InvalidParameterError, match="connectivity"):
        keep_largest_component(np.zeros((3, 3), int), [1], connectivity=3)


def test_entropy_values_shapes_and_types():
    uniform = torch.full((4, 5, 6, 7), 0.25)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 3, (5, 6)), 3).permute(2, 0, 1).float()
    e = entropy(uniform)
    assert isinstance(e, torch.Tensor) and e.shape == (5, 6, 7) and e.dtype == torch.float32
    torch.testing.assert_close(e, torch.full((5, 6, 7), math.log(4)))
    torch.testing.assert_close(entropy(onehot), torch.zeros(5, 6))

    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3), size=(8, 9)).transpose(2, 0, 1).astype(np.float32)
    en = entropy(p)
    assert isinstance(en, np.ndarray) and en.shape == (8, 9) and en.dtype == np.float32
    np.testing.assert_allclose(en, -(p * np.log(p)).sum(0), rtol=1e-5)
    np.testing.assert_allclose(en, entropy(torch.from_numpy(p)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(entropy(p.astype(np.float64)), -(p * np.log(p)).sum(0), rtol=1e-5)
    with pytest.raises(InvalidParameterError, match="probs"):
        entropy(np.float32(1.0))

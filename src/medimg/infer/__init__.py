"""Inference: Gaussian-weighted sliding windows with mirror test-time augmentation, ensembles, post-processing."""

from medimg.infer.postprocess import entropy, keep_largest_component
from medimg.infer.sliding import ensemble_probabilities, gaussian_importance, sliding_window_predict, tile_starts

__all__ = [
    "sliding_window_predict",
    "gaussian_importance",
    "tile_starts",
    "ensemble_probabilities",
    "keep_largest_component",
    "entropy",
]

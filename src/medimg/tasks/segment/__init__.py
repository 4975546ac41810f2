"""Deep-learning segmentation: losses, patch sampling, training from a dataset folder, prediction."""

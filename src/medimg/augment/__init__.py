"""Random operations for training: each only draws its parameters, then calls a deterministic twin.

:class:`BatchAugmenter` augments batches of plain tensors (images and label maps) on the CPU, in 2D and 3D,
configured by an :class:`AugSpec`; the drawn parameters are recorded and can be replayed with
:meth:`BatchAugmenter.apply`.
"""

from medimg.augment.batch import AugSpec, BatchAugmenter

__all__ = ["AugSpec", "BatchAugmenter"]

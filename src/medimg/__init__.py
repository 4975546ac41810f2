"""medimg: medical image processing that joins deep learning with classical algorithms.

Import what you need from the subpackages (``medimg.io``, ``medimg.preprocess``); the top level only exposes
the core types so that ``import medimg`` stays cheap.
"""

from medimg.core import Geometry, Image, Kind, MedimgError, Modality, Space

__version__ = "0.1.0"

__all__ = ["Image", "Geometry", "Kind", "Modality", "Space", "MedimgError", "__version__"]

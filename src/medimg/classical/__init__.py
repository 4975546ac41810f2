"""Classical (non-learning) segmentation and registration as pure functions on Image, 2D and 3D.

Thresholds, region growing, morphology and connected components, watershed, fuzzy c-means, graph cut, level sets
and superpixels. Each returns a new label (or probability) Image on the input's grid and records itself in the
history. Registration (rigid, affine, B-spline, demons on SimpleITK's framework) returns a RegistrationResult whose
transform can be saved, loaded and applied to other images (:mod:`medimg.classical.registration`); atlas-based
segmentation registers labelled atlases onto an image and fuses their labels (:mod:`medimg.classical.atlas`).
"""

from medimg.classical.atlas import AtlasResult, atlas_segment
from medimg.classical.fcm import FCMResult, fuzzy_c_means
from medimg.classical.graphcut import graph_cut
from medimg.classical.levelset import chan_vese, geodesic_active_contour
from medimg.classical.morphology import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_opening,
    component_stats,
    connected_components,
    fill_holes,
    keep_near,
    largest_component,
)
from medimg.classical.region import confidence_connected, connected_threshold
from medimg.classical.registration import (
    RegistrationResult,
    displacement_field,
    jacobian_summary,
    load_transform,
    register,
    save_transform,
    warp,
)
from medimg.classical.seeds import seeds_to_index
from medimg.classical.superpixels import slic, superpixel_pseudo_labels
from medimg.classical.threshold import hu_range, multi_otsu, otsu, threshold
from medimg.classical.watershed import watershed_instances

__all__ = [
    "threshold", "otsu", "multi_otsu", "hu_range", "seeds_to_index", "connected_threshold", "confidence_connected",
    "binary_dilation", "binary_erosion", "binary_opening", "binary_closing", "fill_holes", "largest_component",
    "keep_near", "connected_components", "component_stats", "watershed_instances", "FCMResult", "fuzzy_c_means",
    "graph_cut", "chan_vese", "geodesic_active_contour", "slic", "superpixel_pseudo_labels",
    "RegistrationResult", "register", "warp", "displacement_field", "jacobian_summary", "save_transform",
    "load_transform", "AtlasResult", "atlas_segment",
]

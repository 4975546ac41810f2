"""Quantities in physical units: volume (mL), surface area and cross-sections (mm^2), diameters (mm, RECIST-style),
centroids (LPS mm), ellipse fits and perimeters of 2D objects, intensity statistics (HU for CT), and per-label
tables with CSV/JSON output.

Everything uses the image geometry: spacing makes the measures physical, the direction places centroids in
patient space. See :func:`measure_labels` for the record layout.
"""

from medimg.measure.ellipse import EllipseFit, ellipse_circumference, fit_ellipse, perimeter_mm
from medimg.measure.intensity import intensity_stats, intensity_unit
from medimg.measure.shape import (
    RecistDiameters,
    bounding_box,
    centroid_mm,
    equivalent_circle_diameter_mm,
    equivalent_sphere_diameter_mm,
    longest_diameter_mm,
    max_cross_section_area_mm2,
    recist_diameters,
    surface_area_mm2,
    volume_ml,
)
from medimg.measure.table import instance_summary, label_array, measure_labels, measure_mask, to_csv, to_json

__all__ = [
    "volume_ml", "surface_area_mm2", "centroid_mm", "bounding_box", "longest_diameter_mm", "RecistDiameters",
    "recist_diameters", "max_cross_section_area_mm2", "equivalent_sphere_diameter_mm",
    "equivalent_circle_diameter_mm", "EllipseFit", "fit_ellipse", "ellipse_circumference", "perimeter_mm",
    "intensity_stats", "intensity_unit", "measure_labels", "measure_mask", "instance_summary", "label_array",
    "to_csv", "to_json",
]

"""Pure, spacing-aware metric functions.

* :mod:`~medimg.metrics.segmentation`: Dice, IoU, HD95, ASSD, NSD, sensitivity/specificity/precision, volume
  difference; per class with :func:`segmentation_scores`; documented empty-mask conventions.
* :mod:`~medimg.metrics.instance`: instance F1 at IoU thresholds, Data Science Bowl mean AP, AJI.
* :mod:`~medimg.metrics.classification`: ROC AUC, accuracy, balanced accuracy, rates at a threshold,
  confusion matrix, expected calibration error.
* :mod:`~medimg.metrics.detection`: box IoU, AP / mAP (VOC), FROC.
* :mod:`~medimg.metrics.image_quality`: PSNR, SSIM.
* :mod:`~medimg.metrics.registration`: target registration error, Jacobian determinant statistics.
* :mod:`~medimg.metrics.evaluate`: folder/pair evaluation behind ``medimg evaluate``.
"""

from medimg.metrics.classification import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    roc_auc,
    sensitivity_specificity,
)
from medimg.metrics.detection import average_precision, box_iou, froc, mean_average_precision
from medimg.metrics.image_quality import psnr, ssim
from medimg.metrics.instance import aggregated_jaccard_index, dsb_average_precision, instance_f1
from medimg.metrics.registration import jacobian_determinant, jacobian_statistics, target_registration_error
from medimg.metrics.segmentation import (
    assd,
    dice,
    hausdorff_distance,
    hd95,
    iou,
    normalized_surface_dice,
    precision,
    relative_volume_difference,
    segmentation_scores,
    sensitivity,
    specificity,
    surface_distances,
    volume_difference_ml,
)

__all__ = [
    "dice", "iou", "hd95", "hausdorff_distance", "assd", "normalized_surface_dice", "surface_distances",
    "sensitivity", "specificity", "precision", "volume_difference_ml", "relative_volume_difference",
    "segmentation_scores", "instance_f1", "dsb_average_precision", "aggregated_jaccard_index", "roc_auc",
    "accuracy", "balanced_accuracy", "confusion_matrix", "sensitivity_specificity", "expected_calibration_error",
    "box_iou", "average_precision", "mean_average_precision", "froc", "psnr", "ssim", "target_registration_error",
    "jacobian_determinant", "jacobian_statistics",
]

"""Bundle-specific code of ``lung_tumor_ct_2d_segmentation``.

Datalists of prepared slices and volumes with class-balanced sampling weights, input checks, metrics (Dice, IoU,
accuracy, pixel AUC-ROC), report PNGs and loss curves, CPU speed-ups and atomic writers.
"""

from . import (
    checkpoints,
    context,
    datalist,
    inputs,
    lesion_weights,
    metrics,
    precision,
    report,
    sampling,
    transforms,
    writers,
)

__all__ = [
    "checkpoints",
    "context",
    "datalist",
    "inputs",
    "lesion_weights",
    "metrics",
    "precision",
    "report",
    "sampling",
    "transforms",
    "writers",
]

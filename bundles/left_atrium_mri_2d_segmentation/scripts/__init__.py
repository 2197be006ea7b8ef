"""Bundle-specific code of ``left_atrium_mri_2d_segmentation``.

Datalists of prepared slices and volumes, input checks, metrics (Dice, IoU, accuracy, pixel AUC-ROC), report PNGs
and loss curves, CPU speed-ups and atomic writers.
"""

from . import checkpoints, datalist, inputs, metrics, precision, report, transforms, writers

__all__ = ["checkpoints", "datalist", "inputs", "metrics", "precision", "report", "transforms", "writers"]

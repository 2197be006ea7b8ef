"""Bundle-specific code of ``abdominal_organs_ct_2d_segmentation``.

Datalists of prepared slices and volumes, input checks, the MobileNetV3-Large U-Net, metrics (Dice, IoU, accuracy,
pixel AUC-ROC), report PNGs, CPU speed-ups and atomic writers.
"""

from . import checkpoints, datalist, inputs, metrics, networks, precision, report, transforms, writers

__all__ = ["checkpoints", "datalist", "inputs", "metrics", "networks", "precision", "report", "transforms", "writers"]

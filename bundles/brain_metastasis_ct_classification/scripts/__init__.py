"""Bundle-specific code of ``brain_metastasis_ct_classification``.

Input checks and datalists, head CT preprocessing and class-conditional augmentation, patient-level sampling, the
ResNet-50 slice classifier with its pretrained loader, patient-level engine pieces (max-pooling inferer, gradient
clipping, curriculum, training record), patient metrics, the predictions CSV writer and Grad-CAM PNGs of the most
suspicious slices.
"""

from . import (
    checkpoints,
    datalist,
    engine,
    inputs,
    metrics,
    network,
    precision,
    sampling,
    transforms,
    visualize,
    writers,
)

__all__ = [
    "checkpoints",
    "datalist",
    "engine",
    "inputs",
    "metrics",
    "network",
    "precision",
    "sampling",
    "transforms",
    "visualize",
    "writers",
]

"""Bundle-specific code of ``liver_tumor_ct_segmentation``: datalists, input checks, metrics, overlays, writers."""

from . import checkpoints, datalist, inputs, metrics, overlay, precision, resample, writers

__all__ = ["checkpoints", "datalist", "inputs", "metrics", "overlay", "precision", "resample", "writers"]

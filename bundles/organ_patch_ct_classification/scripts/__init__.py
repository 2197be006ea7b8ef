"""Bundle-specific code of ``organ_patch_ct_classification``: datalists, input checks and click patches, pretrained
weights, confusion matrices, prediction CSVs, bfloat16 autocast and resume."""

from . import checkpoints, confusion, datalist, inputs, precision, pretrained, writers

__all__ = ["checkpoints", "confusion", "datalist", "inputs", "pretrained", "precision", "writers"]

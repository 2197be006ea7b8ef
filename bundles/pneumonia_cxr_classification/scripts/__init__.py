"""Bundle-specific code of ``pneumonia_cxr_classification``: the radiograph reader (DICOM CR/DX with MONOCHROME1,
rescale and compressed transfer syntaxes; PNG/JPEG), datalists, class activation map overlays, prediction CSVs,
pretrained weights, confusion matrices, bfloat16 autocast and resume."""

from . import cam, checkpoints, confusion, datalist, inputs, precision, pretrained, radiograph, writers

__all__ = [
    "cam",
    "checkpoints",
    "confusion",
    "datalist",
    "inputs",
    "precision",
    "pretrained",
    "radiograph",
    "writers",
]

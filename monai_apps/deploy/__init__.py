"""MONAI Deploy apps over this repository's bundles (MONAI Deploy App SDK 4, run in-process by Holoscan).

Apps (``python -m monai_apps.deploy.<app> -i DICOM_DIR -o OUT_DIR -m MODEL``):

* ``liver_seg``: CT series -> DICOM SEG (liver, liver tumour) + STL, on ``liver_tumor_ct_segmentation``;
* ``abdominal_organs``: CT series -> DICOM SEG (five organs), slice-wise, on ``abdominal_organs_ct_2d_segmentation``;
* ``brain_metastasis``: head CT series -> patient-level probability as DICOM Basic Text SR + JSON, on
  ``brain_metastasis_ct_classification``.
"""

from .runner import raise_stack_limit as _raise_stack_limit

# Holoscan (imported with monai.deploy) warns on import when the soft stack limit is below 32 MiB: raise it first,
# as ``python -m monai_apps`` does, so that ``python -m monai_apps.deploy.<app>`` starts without that warning.
_raise_stack_limit()

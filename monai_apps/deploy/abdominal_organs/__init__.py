"""Five-organ DICOM SEG app over ``bundles/abdominal_organs_ct_2d_segmentation`` (slice-wise inference)."""

from .app import BUNDLE, SEGMENTS, AbdominalOrgansSegApp

__all__ = ["BUNDLE", "SEGMENTS", "AbdominalOrgansSegApp"]

"""Abdominal organs app on the 2D bundle: a CT DICOM series in, a DICOM SEG with five organ segments out.

The bundle ``abdominal_organs_ct_2d_segmentation`` is a 2D network; its inference config runs it slice by slice
over the volume (MONAI's ``SliceInferer``), so the slice-wise inference happens inside the bundle inference
operator, with the bundle's own pre-processing (RAS orientation, HU window, in-plane resize) and its inversion.

Pipeline::

    StudyLoaderOperator -> SeriesSelectorOperator (CT) -> DICOMSeriesToVolumeOperator
      -> BundleInferenceOperator (MonaiBundleInferenceOperator, SliceInferer from the bundle's inference config)
      -> DICOMSegmentationWriterOperator (liver, spleen, left kidney, right kidney, bowel; SNOMED CT codes)

Run it::

    python -m monai_apps.deploy.abdominal_organs -i DICOM_DIR -o OUT_DIR -m bundles/abdominal_organs_ct_2d_segmentation
"""

from __future__ import annotations

from ..seg_app import SegmentationApp

__all__ = ["BUNDLE", "SEGMENTS", "AbdominalOrgansSegApp"]

BUNDLE = "abdominal_organs_ct_2d_segmentation"
#: the bundle's output channels 1.. in order, written as SEG segments 1..
SEGMENTS = ("liver", "spleen", "kidney_left", "kidney_right", "bowel")


class AbdominalOrgansSegApp(SegmentationApp):
    """DICOM CT series -> five-organ DICOM SEG, with the 2D bundle's own (slice-wise) inference config.

    Args:
        argv: ``[python, program, -i DIR, -o DIR, -m MODEL, ...]`` (default ``sys.argv``).
        configs: bundle config names merged in order (default ``["inference"]``).
        stl: unused (this app writes no surface mesh).
    """

    BUNDLE = BUNDLE
    SEGMENTS = SEGMENTS
    SERIES_DESCRIPTION = "Abdominal organs SEG, not for clinical use,"
    STL = None

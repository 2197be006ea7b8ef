"""Liver and liver tumour segmentation app: a CT DICOM series in, a DICOM SEG and an STL surface out.

Pipeline (MONAI Deploy App SDK operators, run in-process by Holoscan)::

    StudyLoaderOperator (DICOMDataLoaderOperator)
      -> SeriesSelectorOperator (DICOMSeriesSelectorOperator, Modality CT)
      -> DICOMSeriesToVolumeOperator
      -> BundleInferenceOperator (MonaiBundleInferenceOperator on liver_tumor_ct_segmentation's inference config)
      -> DICOMSegmentationWriterOperator (highdicom; segments "Liver" and "Liver tumour", SNOMED CT codes)
      -> SurfaceMeshOperator (STLConversionOperator: liver + tumour surface in patient coordinates, LPS mm)

Run it::

    python -m monai_apps.deploy.liver_seg -i DICOM_DIR -o OUT_DIR -m bundles/liver_tumor_ct_segmentation
    python -m monai_apps.deploy.liver_seg -i DICOM_DIR -o OUT_DIR -m model.ts
    python -m monai_apps.deploy.liver_seg -i DICOM_DIR -o OUT_DIR -m runs/quickstart/models/model.pt --configs unet,cpu

Outputs: ``OUT_DIR/<SOP Instance UID>.dcm`` (the SEG) and ``OUT_DIR/stl/liver.stl``.
"""

from __future__ import annotations

from ..seg_app import SegmentationApp

__all__ = ["BUNDLE", "SEGMENTS", "LiverTumorSegApp"]

BUNDLE = "liver_tumor_ct_segmentation"
#: the bundle's output channels 1.. in order, written as SEG segments 1..
SEGMENTS = ("liver", "liver tumour")


class LiverTumorSegApp(SegmentationApp):
    """DICOM CT series -> liver + liver tumour DICOM SEG (+ liver STL), with the bundle's own inference config.

    Args:
        argv: ``[python, program, -i DIR, -o DIR, -m MODEL, ...]`` (default ``sys.argv``).
        configs: bundle config names merged in order (default ``["inference"]``; a TorchScript export uses the
            configs embedded in it).
        stl: also write ``stl/liver.stl`` (the liver with its tumours).
    """

    BUNDLE = BUNDLE
    SEGMENTS = SEGMENTS
    SERIES_DESCRIPTION = "Liver + tumour SEG, not for clinical use,"
    STL = ("liver.stl", [1, 2])

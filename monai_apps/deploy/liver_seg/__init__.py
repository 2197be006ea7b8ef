"""Liver and liver tumour DICOM SEG app over ``bundles/liver_tumor_ct_segmentation``."""

from .app import BUNDLE, SEGMENTS, LiverTumorSegApp

__all__ = ["BUNDLE", "SEGMENTS", "LiverTumorSegApp"]

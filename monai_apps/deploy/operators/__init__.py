"""Operators shared by the deploy apps (each a small subclass of, or companion to, a MONAI Deploy SDK operator)."""

from .bundle_inference import BundleInferenceOperator
from .loader import DicomInputError, StudyLoaderOperator
from .selector import NoMatchingSeriesError, SeriesSelectorOperator, modality_rules

__all__ = [
    "BundleInferenceOperator",
    "DicomInputError",
    "NoMatchingSeriesError",
    "SeriesSelectorOperator",
    "StudyLoaderOperator",
    "modality_rules",
]

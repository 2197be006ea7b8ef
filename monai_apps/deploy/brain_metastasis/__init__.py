"""Patient-level brain metastasis app (Basic Text SR + JSON) over ``bundles/brain_metastasis_ct_classification``."""

from .app import BUNDLE, BrainMetastasisApp, patient_report, report_text

__all__ = ["BUNDLE", "BrainMetastasisApp", "patient_report", "report_text"]

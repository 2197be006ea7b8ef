"""Smoke case of ``brain_metastasis_ct_classification``: a tiny generated cohort of head CT DICOM series."""

from __future__ import annotations

from pathlib import Path

from bundle_cases import SmokeCase


def make_head_cohort(root: Path, n_patients: int = 4, n_test: int = 2, seed: int = 3) -> Path:
    """A tiny cohort: 64 x 64 pixels of 3.5 mm, 10 mm slices, half the patients with metastases, + labels CSVs."""
    from monai_apps.data.synthetic_head import generate_head_cohort

    return generate_head_cohort(
        root / "brain_mets",
        n_patients=n_patients,
        n_test=n_test,
        seed=seed,
        shape=(64, 64, None),
        spacing=(3.5, 3.5, 10.0),
        progress=False,
    )


CASE = SmokeCase(
    make_data=make_head_cohort,
    inference_input=str,  # the folder of patients itself
    overrides={"image_size": 64, "slice_mm": 10.0, "sw_batch_size": 8},
    output_glob="predictions.csv",
)

"""Smoke case of ``abdominal_organs_ct_2d_segmentation``: tiny generated TotalSegmentator subjects, prepared slices."""

from __future__ import annotations

from pathlib import Path

from bundle_cases import SmokeCase


def make_abdomen_slices(root: Path, n_cases: int = 3, n_test: int = 1, seed: int = 5, size: int = 64) -> Path:
    """TotalSegmentator subjects of 64 x 64 x 24 voxels (6 x 6 x 12 mm), prepared into 64 x 64 slices."""
    from monai_apps.data.cohort import generate_cohort
    from monai_apps.data.slices import prepare_slices

    subjects = generate_cohort(
        root / "totalseg",
        n_cases=n_cases,
        n_test=n_test,
        seed=seed,
        layout="totalsegmentator",
        shape=(64, 64, 24),
        spacing=(6.0, 6.0, 12.0),
        progress=False,
    )
    datalist = prepare_slices(subjects, root / "slices", classes="abdominal_organs", size=(size, size), progress=False)
    return datalist.parent


def first_test_image(dataset_dir: Path) -> str:
    import json

    return json.loads((dataset_dir / "datalist.json").read_text())["volumes"]["test"][0]["image"]


CASE = SmokeCase(
    make_data=make_abdomen_slices,
    inference_input=first_test_image,
    overrides={"image_size": [64, 64], "batch_size": 4, "virtual_batch_size": 8, "sw_batch_size": 8},
    output_glob="*_seg.nii.gz",
)

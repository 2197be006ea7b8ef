"""Smoke case of ``lung_tumor_ct_2d_segmentation``: a tiny generated Task06_Lung folder, prepared slices."""

from __future__ import annotations

from pathlib import Path

from bundle_cases import SmokeCase


def make_lung_slices(root: Path, n_cases: int = 3, n_test: int = 1, seed: int = 5, size: int = 64) -> Path:
    """Task06_Lung cases of 64 x 64 x 20 voxels (6 x 6 x 14 mm) with two tumours each, prepared into slices."""
    from monai_apps.data.cohort import generate_cohort
    from monai_apps.data.slices import prepare_slices

    task = generate_cohort(
        root / "Task06_Lung",
        n_cases=n_cases,
        n_test=n_test,
        seed=seed,
        layout="msd",
        anatomy="chest",
        shape=(64, 64, 20),
        spacing=(6.0, 6.0, 14.0),
        n_tumours=2,
        progress=False,
    )
    datalist = prepare_slices(
        task,
        root / "slices",
        classes="lung_tumour",
        normalize="lung",
        size=(size, size),
        keep_empty=0.5,
        allow_empty=True,
        progress=False,
    )
    return datalist.parent


def first_test_image(dataset_dir: Path) -> str:
    import json

    return json.loads((dataset_dir / "datalist.json").read_text())["volumes"]["test"][0]["image"]


CASE = SmokeCase(
    make_data=make_lung_slices,
    inference_input=first_test_image,
    overrides={"image_size": [64, 64], "skip_first": 2, "features": [8, 8, 16, 32, 64, 8], "batch_size": 4},
    output_glob="*_seg.nii.gz",
)

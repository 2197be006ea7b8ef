"""Smoke case of ``left_atrium_mri_2d_segmentation``: a tiny generated Task02_Heart folder, prepared slices."""

from __future__ import annotations

from pathlib import Path

from bundle_cases import SmokeCase


def make_left_atrium_slices(root: Path, n_cases: int = 3, n_test: int = 1, seed: int = 5, size: int = 64) -> Path:
    """Task02_Heart cases of 64 x 64 x 24 voxels (6 mm), prepared into z-scored 64 x 64 slices."""
    from monai_apps.data.cohort import generate_cohort
    from monai_apps.data.slices import prepare_slices

    task = generate_cohort(
        root / "Task02_Heart",
        n_cases=n_cases,
        n_test=n_test,
        seed=seed,
        layout="msd",
        anatomy="cardiac",
        shape=(64, 64, 24),
        spacing=(6.0, 6.0, 6.0),
        progress=False,
    )
    datalist = prepare_slices(
        task, root / "slices", classes="left_atrium", normalize="zscore", size=(size, size), progress=False
    )
    return datalist.parent


def first_test_image(dataset_dir: Path) -> str:
    import json

    return json.loads((dataset_dir / "datalist.json").read_text())["volumes"]["test"][0]["image"]


CASE = SmokeCase(
    make_data=make_left_atrium_slices,
    inference_input=first_test_image,
    overrides={"image_size": [64, 64], "channels": [8, 16, 32, 64, 128], "batch_size": 4},
    output_glob="*_seg.nii.gz",
)

"""Smoke case of ``liver_tumor_ct_segmentation``: a tiny generated Decathlon Task03 folder."""

from __future__ import annotations

from pathlib import Path

from bundle_cases import SmokeCase


def make_liver_msd(root: Path, n_cases: int = 3, n_test: int = 1, seed: int = 5) -> Path:
    """A tiny Decathlon Task03 folder: 64 x 64 x 24 voxels of 6 x 6 x 12 mm (coarse, but the whole abdomen)."""
    from monai_apps.data.cohort import generate_cohort

    out = root / "Task03_Liver"
    generate_cohort(
        out,
        n_cases=n_cases,
        n_test=n_test,
        seed=seed,
        shape=(64, 64, 24),
        spacing=(6.0, 6.0, 12.0),
        n_tumours=2,
        progress=False,
    )
    return out


def first_test_image(dataset_dir: Path) -> str:
    return str(sorted((dataset_dir / "imagesTs").glob("*.nii.gz"))[0])


CASE = SmokeCase(
    make_data=make_liver_msd,
    inference_input=first_test_image,
    overrides={"pixdim": [6.0, 6.0, 6.0], "patch_size": [64, 64, 64], "num_samples": 1, "batch_size": 2},
    output_glob="*_seg.nii.gz",
)

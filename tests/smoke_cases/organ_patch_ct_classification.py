"""Smoke case of ``organ_patch_ct_classification``: patches prepared from a tiny generated TotalSegmentator cohort."""

from __future__ import annotations

from pathlib import Path

from bundle_cases import SmokeCase


def make_organ_patches(root: Path, n_cases: int = 4, seed: int = 3, balance: int = 12) -> Path:
    """Four coarse subjects (128 x 128 x 10 voxels of 2.6 x 2.6 x 24 mm) -> 32x32 patches, split 2/1/1 by subject.

    At 2.6 mm a 32-pixel patch spans 83 mm, so mostly liver and lung patches come out: enough for the plumbing.
    """
    from monai_apps.data.cohort import generate_cohort
    from monai_apps.data.organ_patches import prepare_organ_patches

    cohort = generate_cohort(
        root / "ts",
        n_cases=n_cases,
        seed=seed,
        layout="totalsegmentator",
        shape=(128, 128, 10),
        spacing=(2.6, 2.6, 24.0),
        progress=False,
    )
    out = root / "organ_patches"
    prepare_organ_patches(
        cohort,
        out,
        patch_size=32,
        stride=8,
        purity=0.9,
        min_fill=0.8,
        val_fraction=0.25,
        test_fraction=0.25,
        balance=balance,
        progress=False,
    )
    return out


def first_test_patch(dataset_dir: Path) -> str:
    return str(sorted((dataset_dir / "test").rglob("*.png"))[0])


CASE = SmokeCase(
    make_data=make_organ_patches,
    inference_input=first_test_patch,
    overrides={"patch_size": [32, 32], "batch_size": 8},
    output_glob="predictions.csv",
)

"""Per-bundle smoke cases for the shared model-zoo checks in ``test_bundles.py``.

Every folder in ``bundles/`` must register a :class:`SmokeCase` here: how to make a tiny dataset for it, which
settings shrink it to seconds on a CPU, and how to call its inference. A bundle without a case fails the checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SmokeCase:
    """How the shared checks run one bundle on tiny generated data.

    Attributes:
        make_data: writes a tiny dataset into a folder and returns the ``dataset_dir`` to train from.
        inference_input: returns the ``input_path`` for inference, given that ``dataset_dir``.
        overrides: bundle settings that shrink the run (voxel size, patch size, network width).
        output_glob: glob, under the inference ``output_dir``, of the files inference writes.
    """

    make_data: Callable[[Path], Path]
    inference_input: Callable[[Path], str]
    overrides: dict = field(default_factory=dict)
    output_glob: str = "*"


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


SMOKE_CASES: dict[str, SmokeCase] = {
    "liver_tumor_ct_segmentation": SmokeCase(
        make_data=make_liver_msd,
        inference_input=first_test_image,
        overrides={"pixdim": [6.0, 6.0, 6.0], "patch_size": [32, 32, 32], "num_samples": 1, "batch_size": 2},
        output_glob="*_seg.nii.gz",
    ),
}


def assert_same_geometry(out_file: str | Path, reference: np.ndarray, reference_affine: np.ndarray) -> None:
    """Assert a written NIfTI has the shape and affine of the reference."""
    import nibabel as nib

    out = nib.load(str(out_file))
    assert out.shape == tuple(reference.shape), f"{out_file}: shape {out.shape} != input {reference.shape}"
    np.testing.assert_allclose(out.affine, reference_affine, atol=1e-3)

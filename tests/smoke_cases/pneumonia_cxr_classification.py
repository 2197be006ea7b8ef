"""Smoke case of ``pneumonia_cxr_classification``: a tiny generated DICOM set in the chest_xray layout."""

from __future__ import annotations

from pathlib import Path

from bundle_cases import SmokeCase


def make_cxr(root: Path, n_train: int = 8, n_val: int = 4, n_test: int = 4, seed: int = 2, size: int = 128) -> Path:
    """Synthetic radiographs (CR/DX, MONOCHROME1/2, some JPEG 2000) in ``{train,val,test}/{NORMAL,PNEUMONIA}``."""
    from monai_apps.data.synthetic_cxr import generate_cxr_dataset

    return generate_cxr_dataset(
        root / "chest_xray", n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, size=size, progress=False
    )


def first_test_image(dataset_dir: Path) -> str:
    return str(sorted((dataset_dir / "test").rglob("*.dcm"))[0])


CASE = SmokeCase(
    make_data=make_cxr,
    inference_input=first_test_image,
    overrides={"image_size": [64, 64], "batch_size": 4},
    output_glob="predictions.csv",
)

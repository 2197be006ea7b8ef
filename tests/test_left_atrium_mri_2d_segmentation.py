"""The left atrium 2D bundle beyond the shared checks: z-score preprocessing equal to the slice pipeline's, image and
mask augmented together, whole-volume inference on MR DICOM series, and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from smoke_cases.left_atrium_mri_2d_segmentation import make_left_atrium_slices

from monai_apps.bundles import BUNDLES_DIR, config_files, run_bundle
from monai_apps.data.slices import reassemble

BUNDLE = "left_atrium_mri_2d_segmentation"
ROOT = BUNDLES_DIR / BUNDLE
SMALL = {"image_size": [64, 64], "channels": [8, 16, 32, 64, 128], "batch_size": 4, "num_workers": 0}


def root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    message = str(err)
    assert "\n" not in message, f"multi-line error: {message!r}"
    return message


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_left_atrium_slices(tmp_path_factory.mktemp("la"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=SMALL["channels"], strides=[2, 2, 2, 2], num_res_units=2, norm="batch")
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(net.state_dict(), path)
    return path


def _parsed(name: str, *configs: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, list(configs)))
    parser.update({"bundle_root": str(ROOT), **overrides})
    sys.path.insert(0, str(ROOT))
    try:
        return parser.get_parsed_content(name)
    finally:
        sys.path.remove(str(ROOT))


def test_inference_preprocessing_gives_the_prepared_zscored_slices(dataset):
    data = json.loads((dataset / "datalist.json").read_text())
    item = max(data["training"], key=lambda s: len(s["classes"]))
    volume = next(v for v in data["volumes"]["training"] if v["patient"] == item["patient"])
    out = _parsed("preprocessing", "inference", image_size=[64, 64])({"image": volume["image"]})
    np.testing.assert_allclose(
        np.asarray(out["image"][0, :, :, item["slice"]]), np.load(dataset / item["image"]), atol=1e-4
    )
    raw = nib.load(volume["image"]).get_fdata()
    assert abs(float(np.asarray(out["image"]).mean())) < 0.05 and raw.mean() > 10, "z-score not applied"


def test_image_and_mask_are_augmented_together(dataset):
    transform = _parsed("train#preprocessing", "train", dataset_dir=str(dataset), image_size=[64, 64])
    data = json.loads((dataset / "datalist.json").read_text())
    item = max(data["training"], key=lambda s: len(s["classes"]))
    sample = {"image": str(dataset / item["image"]), "label": str(dataset / item["label"])}
    original = np.load(dataset / item["image"])
    moved = 0
    for seed in range(6):
        transform.set_random_state(seed)
        out = transform(dict(sample))
        image, label = np.asarray(out["image"][0]), np.asarray(out["label"][0])
        assert set(np.unique(label)) <= {0.0, 1.0}
        # the blood pool is bright: wherever the mask went, the image there is brighter than the rest
        if label.sum() > 0:
            assert image[label > 0].mean() > image[label == 0].mean() + 0.5
        moved += not np.allclose(image, original)
    assert moved >= 3


def test_the_pipeline_reassembles_predicted_slices_into_the_input_geometry(dataset, tmp_path):
    data = json.loads((dataset / "datalist.json").read_text())
    volume = data["volumes"]["training"][0]
    label = nib.load(dataset / volume["label"])
    slices = {s["slice"]: np.load(dataset / s["label"]) for s in data["training"] if s["patient"] == volume["patient"]}
    out = reassemble(slices, volume["image"], tmp_path / "la.nii.gz")
    ref = np.asarray(label.dataobj)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.affine, nib.load(volume["image"]).affine, atol=1e-5)
    kept = np.zeros(ref.shape, bool)
    # reassembled slices are in RAS order; compare where slices were kept (the generator stores LPS: flip x, y)
    for k in slices:
        kept[:, :, k] = True
    ras_ref = ref[::-1, ::-1] if nib.aff2axcodes(label.affine)[:2] == ("L", "P") else ref
    ras_out = np.asarray(out.dataobj)[::-1, ::-1] if nib.aff2axcodes(label.affine)[:2] == ("L", "P") else out.dataobj
    inter = ((ras_out == 1) & (ras_ref == 1) & kept).sum()
    dice = 2 * inter / (((ras_out == 1) & kept).sum() + ((ras_ref == 1) & kept).sum())
    assert dice > 0.97, dice


def test_inference_on_an_mr_dicom_series_and_refusal_of_ct(checkpoint, tmp_path):
    from monai_apps.data.synthetic_cardiac import generate_cardiac_mri
    from monai_apps.data.writers import write_dicom_series

    mr = generate_cardiac_mri(2, shape=(48, 48, 16), spacing=(6.0, 6.0, 6.0))
    write_dicom_series(tmp_path / "mr", mr.image, mr.affine, modality="MR")
    run_bundle(
        BUNDLE,
        ["inference"],
        input_path=str(tmp_path / "mr"),
        ckpt_path=str(checkpoint),
        output_dir=str(tmp_path / "out"),
        **SMALL,
    )
    outputs = list((tmp_path / "out").glob("*_seg.nii.gz"))
    assert len(outputs) == 1 and nib.load(outputs[0]).shape == (48, 48, 16)
    np.testing.assert_allclose(nib.load(outputs[0]).affine, mr.affine, atol=1e-3)
    write_dicom_series(tmp_path / "ct", mr.image, mr.affine, modality="CT")
    with pytest.raises(Exception) as err:
        run_bundle(
            BUNDLE,
            ["inference"],
            input_path=str(tmp_path / "ct"),
            ckpt_path=str(checkpoint),
            output_dir=str(tmp_path / "out2"),
            **SMALL,
        )
    assert "DICOM modality CT is not MR" in root_cause(err.value)

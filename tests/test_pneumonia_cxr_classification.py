"""Pneumonia chest X-ray bundle and its generator: DICOM variants, the real radiographs, CAM overlays, bad input."""

from __future__ import annotations

import csv
import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from monai_apps.bundles import BUNDLES_DIR, config_files, run_bundle
from monai_apps.data.synthetic_cxr import generate_cxr, generate_cxr_dataset, write_cxr_dicom

BUNDLE = "pneumonia_cxr_classification"
ROOT = BUNDLES_DIR / BUNDLE
REAL_CXR = {
    "RG1_J2KI": "pydicom-data/RG1_J2KI.dcm",
    "CR_MONO1": "dwv/gdcm-CR-MONO1-10-chest.dcm",
    "DX_MONO2": "nhsx-covid-chest-imaging-database/"
    "1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm",
}


@pytest.fixture()
def scripts():
    """The bundle's own ``scripts`` package, imported from the bundle folder."""
    sys.path.insert(0, str(ROOT))
    try:
        yield importlib.import_module("scripts")
    finally:
        sys.path.remove(str(ROOT))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Weights of the bundle's network (untrained: these tests check reading, plumbing and outputs)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["inference"]))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def _rois(image: np.ndarray) -> tuple[float, float]:
    """Mean of both lung fields and of the mediastinum, from the usual position of a PA chest film."""
    h, w = image.shape
    rows = slice(int(0.3 * h), int(0.55 * h))
    lungs = np.concatenate(
        [image[rows, int(0.22 * w) : int(0.35 * w)].ravel(), image[rows, int(0.65 * w) : int(0.78 * w)].ravel()]
    )
    mediastinum = image[rows, int(0.46 * w) : int(0.54 * w)]
    return float(lungs.mean()), float(mediastinum.mean())


# ---------------------------------------------------------------------------------------------------------------
# generator
# ---------------------------------------------------------------------------------------------------------------
def test_generator_is_reproducible_and_consolidation_is_an_opacity_in_the_lungs():
    normal = generate_cxr(5, pneumonia=False, size=256)
    again = generate_cxr(5, pneumonia=False, size=256)
    np.testing.assert_array_equal(normal.image, again.image)
    sick = generate_cxr(5, pneumonia=True, size=256, severity=0.8)
    assert normal.boxes == [] and sick.boxes
    lungs, mediastinum = _rois(normal.image)
    assert lungs + 0.15 < mediastinum, "lungs must be darker than the mediastinum"
    diff = sick.image - normal.image
    for r0, c0, r1, c1 in sick.boxes:
        assert diff[r0:r1, c0:c1].mean() > 0.03, "consolidation must be brighter than the aerated lung"
    outside = ~np.any(
        [np.pad(np.ones((r1 - r0, c1 - c0), bool), ((r0, 256 - r1), (c0, 256 - c1))) for r0, c0, r1, c1 in sick.boxes],
        axis=0,
    )
    assert abs(diff[outside & ~normal.lung_mask].mean()) < 0.01, "the anatomy outside the lungs must not change"


@pytest.mark.parametrize(
    ("modality", "photometric", "bits", "rescale", "jpeg2000"),
    [
        ("CR", "MONOCHROME1", 12, None, False),
        ("CR", "MONOCHROME1", 15, None, True),
        ("DX", "MONOCHROME2", 14, (2.0, -50.0), False),
        ("DX", "MONOCHROME2", 12, (2.0, -50.0), True),
        ("CR", "MONOCHROME2", 12, None, False),
    ],
)
def test_dicom_variants_read_back_with_the_right_polarity(
    scripts, tmp_path, modality, photometric, bits, rescale, jpeg2000
):
    cxr = generate_cxr(3, pneumonia=True, size=128)
    path = write_cxr_dicom(tmp_path / "x.dcm", cxr, modality, photometric, bits, rescale, jpeg2000)
    ds = pydicom.dcmread(path)
    assert ds.Modality == modality and ds.PhotometricInterpretation == photometric and ds.BitsStored == bits
    assert ds.file_meta.TransferSyntaxUID == ("1.2.840.10008.1.2.4.90" if jpeg2000 else "1.2.840.10008.1.2.1")
    raw = ds.pixel_array.astype(np.float64)
    image, info = scripts.radiograph.read_radiograph(path)
    assert image.shape == (128, 128) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    assert info["photometric"] == photometric and info["modality"] == modality
    # whatever the encoding, what is read is the generated radiograph (bright = attenuating) ...
    assert np.corrcoef(image.ravel(), cxr.image.ravel())[0, 1] > 0.99
    # ... while the stored values of MONOCHROME1 files run the other way
    sign = -1 if photometric == "MONOCHROME1" else 1
    assert sign * np.corrcoef(raw.ravel(), cxr.image.ravel())[0, 1] > 0.99
    if rescale is not None:
        assert info["rescale"] == rescale and float(ds.RescaleSlope) == 2.0
        # the modality LUT was applied: stored values are (value + 50) / 2
        value = np.clip(cxr.image, 0, 1) * (2**bits - 1)
        np.testing.assert_allclose(2 * raw - 50, value, atol=2.0)


def test_dataset_layout_and_labels(tmp_path):
    out = generate_cxr_dataset(
        tmp_path / "cxr", n_train=12, n_val=4, n_test=4, seed=1, size=96, jpeg2000_fraction=0.5, progress=False
    )
    with open(out / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        for cls in ("NORMAL", "PNEUMONIA"):
            assert len(list((out / split / cls).glob("*.dcm"))) == n // 2
    for row in rows:
        assert (out / row["file"]).is_file() and row["file"].split("/")[1] == row["label"]
        assert (row["boxes"] != "[]") == (row["label"] == "PNEUMONIA")
    assert {r["photometric"] for r in rows} == {"MONOCHROME1", "MONOCHROME2"}
    assert {r["transfer_syntax"] for r in rows} == {"JPEG2000Lossless", "ExplicitVRLittleEndian"}
    assert {r["modality"] for r in rows} == {"CR", "DX"}


# ---------------------------------------------------------------------------------------------------------------
# real radiographs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.real
@pytest.mark.parametrize("name", sorted(REAL_CXR))
def test_real_radiographs_load_with_lungs_dark(scripts, real_dir, name):
    from monai.transforms import Compose, Resized

    path = real_dir / REAL_CXR[name]
    ds = pydicom.dcmread(path)
    image, info = scripts.radiograph.read_radiograph(path)
    assert image.shape == (int(ds.Rows), int(ds.Columns))
    lungs, mediastinum = _rois(image)
    assert lungs + 0.1 < mediastinum, f"{name}: lungs {lungs:.2f} not darker than mediastinum {mediastinum:.2f}"
    raw_lungs, raw_mediastinum = _rois(ds.pixel_array.astype(np.float32))
    if ds.PhotometricInterpretation == "MONOCHROME1":  # the stored values have the opposite polarity
        assert raw_lungs > raw_mediastinum and info["photometric"] == "MONOCHROME1"
    loaded = Compose([scripts.radiograph.LoadRadiographd("image"), Resized("image", (224, 224), mode="area")])(
        {"image": str(path)}
    )["image"]
    assert tuple(loaded.shape) == (1, 224, 224) and loaded.meta["filename_or_obj"] == str(path)
    assert 0.0 <= float(loaded.min()) and float(loaded.max()) <= 1.0 and float(loaded.std()) > 0.1


@pytest.mark.real
def test_inference_on_the_real_radiographs_writes_predictions_and_cams(real_dir, checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, rel in REAL_CXR.items():
        (folder / f"{name}.dcm").symlink_to(real_dir / rel)
    run_bundle(
        BUNDLE,
        ["inference"],
        input_path=str(folder),
        ckpt_path=str(checkpoint),
        output_dir=str(tmp_path / "out"),
        num_workers=0,
    )
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = {Path(r["image"]).stem: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(REAL_CXR)
    assert rows["RG1_J2KI"]["transfer_syntax"] == "JPEG 2000 Image Compression"
    assert rows["CR_MONO1"]["photometric"] == "MONOCHROME1" and rows["DX_MONO2"]["modality"] == "DX"
    for name, row in rows.items():
        assert row["class"] in ("normal", "pneumonia")
        assert abs(float(row["p_normal"]) + float(row["p_pneumonia"]) - 1) < 2e-3
        cam = np.asarray(Image.open(row["cam"]))
        assert Path(row["cam"]).name == f"{name}_cam.png" and cam.shape == (224, 448, 3)
        left, right = cam[:, :224].astype(int), cam[:, 224:].astype(int)
        assert (left[..., 0] == left[..., 1]).all(), "left panel is the grey radiograph"
        assert np.abs(right - left).mean() > 5, "right panel carries the activation map"


# ---------------------------------------------------------------------------------------------------------------
# bad input, CAM, pretrained weights
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("ct_slice", "DICOM modality CT"),
        ("random_bytes", "not a DICOM file"),
        ("truncated", "cannot decode the pixel data"),
        ("truncated_j2k", "truncated or corrupt DICOM file"),
        ("empty_folder", "holds no radiographs"),
        ("missing", "no such file or folder"),
        ("blank", "blank image"),
    ],
)
def test_bad_input_fails_with_one_line(scripts, tmp_path, case, message):
    """The inference datalist (what ``inference.json`` calls first) rejects each bad input with one line."""
    folder = tmp_path / "in"
    folder.mkdir()
    cxr = generate_cxr(4, pneumonia=False, size=96)
    good = write_cxr_dicom(folder / "good.dcm", cxr, jpeg2000=True)
    bad = folder / "bad.dcm"
    if case == "ct_slice":
        from pydicom.data import get_testdata_file

        bad.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    elif case == "random_bytes":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "truncated":
        data = write_cxr_dicom(tmp_path / "big.dcm", generate_cxr(4, pneumonia=False, size=256)).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "truncated_j2k":
        data = write_cxr_dicom(tmp_path / "big.dcm", generate_cxr(4, False, size=256), jpeg2000=True).read_bytes()
        bad.write_bytes(data[: len(data) * 3 // 4])
    elif case == "empty_folder":
        good.unlink()
    elif case == "missing":
        folder = tmp_path / "nowhere"
    else:
        write_cxr_dicom(bad, type(cxr)(np.zeros((96, 96), np.float32), (1.0, 1.0), False))
    with pytest.raises(scripts.inputs.InputError) as err:
        scripts.inputs.inference_datalist(folder)
    assert re.search(message, str(err.value)) and "\n" not in str(err.value), str(err.value)
    assert str(bad if case not in ("empty_folder", "missing") else folder) in str(err.value)


def test_bundle_run_on_bad_input_writes_nothing(checkpoint, tmp_path):
    from pydicom.data import get_testdata_file

    folder = tmp_path / "in"
    folder.mkdir()
    write_cxr_dicom(folder / "a_good.dcm", generate_cxr(4, pneumonia=False, size=96))
    (folder / "b_ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    with pytest.raises(Exception) as err:  # noqa: B017 (MONAI wraps it; the cause is checked below)
        run_bundle(
            BUNDLE,
            ["inference"],
            input_path=str(folder),
            ckpt_path=str(checkpoint),
            output_dir=str(tmp_path / "out"),
            num_workers=0,
        )
    root = err.value
    while root.__cause__ is not None and type(root).__name__ != "InputError":
        root = root.__cause__
    assert type(root).__name__ == "InputError" and "b_ct.dcm: DICOM modality CT" in str(root), repr(root)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "output written for bad input"


def test_cam_overlay_panels(scripts, tmp_path):
    image = np.linspace(0, 1, 64 * 32, dtype=np.float32).reshape(64, 32)
    cam = np.zeros((64, 32), np.float32)
    cam[10:20, 5:15] = 1.0
    path = scripts.cam.save_cam_overlay(tmp_path / "x_cam.png", image, cam)
    rgb = np.asarray(Image.open(path)).astype(int)
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_allclose(rgb[:, :32, 0], np.round(image * 255), atol=1)
    left, right = rgb[:, :32], rgb[:, 32:]
    np.testing.assert_allclose(right[40:50, 5:15], left[40:50, 5:15], atol=1)  # no activation: the image itself
    hot = right[10:20, 5:15]
    assert np.abs(hot - left[10:20, 5:15]).mean() > 15, "the activated region is coloured"
    assert hot[..., 0].mean() > hot[..., 2].mean() + 30, "the strongest activation is red (jet)"


@pytest.mark.parametrize(
    ("path", "stem"),
    [
        ("/in/1.3.6.1.4.1.11129.5.5.1105.dcm", "1.3.6.1.4.1.11129.5.5.1105"),  # UID file names keep their dots
        ("/in/1.2.840.113619.2", "1.2.840.113619.2"),  # no extension: the whole name
        ("chest.PNG", "chest"),
        ("IM0001", "IM0001"),
    ],
)
def test_cam_file_names_keep_dicom_uids(scripts, path, stem):
    assert scripts.cam.image_stem(path) == stem


def test_pretrained_path_loads_a_torchvision_style_state_dict(tmp_path):
    from monai.bundle import ConfigParser
    from monai.networks.nets import resnet18

    torch.manual_seed(3)
    state = {
        f"module.{k}": v
        for k, v in resnet18(
            spatial_dims=2, n_input_channels=3, num_classes=1000, conv1_t_stride=2, bias_downsample=False
        )
        .state_dict()
        .items()
    }
    torch.save(state, tmp_path / "imagenet_like.pt")
    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["train"]))
    parser.update({"pretrained_path": str(tmp_path / "imagenet_like.pt"), "bundle_root": str(ROOT)})
    sys.path.insert(0, str(ROOT))
    try:
        net = parser.get_parsed_content("network")
    finally:
        sys.path.remove(str(ROOT))
    sd = net.state_dict()
    torch.testing.assert_close(sd["layer2.0.downsample.0.weight"], state["module.layer2.0.downsample.0.weight"])
    torch.testing.assert_close(sd["conv1.weight"], state["module.conv1.weight"].sum(1, keepdim=True))
    assert sd["fc.weight"].shape == (2, 512)

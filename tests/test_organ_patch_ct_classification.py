"""The organ-patch bundle beyond the shared checks: click patches, batch inference, pretrained weights, variants,
confusion matrices, resume and bad input."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from PIL import Image
from smoke_cases.organ_patch_ct_classification import make_organ_patches

from monai_apps.bundles import BUNDLES_DIR, config_files, run_bundle
from monai_apps.data.writers import write_nifti

BUNDLE = "organ_patch_ct_classification"
ROOT = BUNDLES_DIR / BUNDLE
SMOKE = str(REPO_ROOT / "configs" / "smoke.json")
CLASSES = ["kidney", "liver", "lung", "muscle"]


@pytest.fixture()
def scripts():
    """The bundle's own ``scripts`` package, imported from the bundle folder."""
    sys.path.insert(0, str(ROOT))
    try:
        yield importlib.import_module("scripts")
    finally:
        sys.path.remove(str(ROOT))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_organ_patches(tmp_path_factory.mktemp("organ"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Weights of the bundle's network (untrained: these tests check plumbing, not accuracy)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["inference"]))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def _infer(input_path, ckpt, out_dir, **overrides):
    return run_bundle(
        BUNDLE,
        ["inference"],
        input_path=str(input_path),
        ckpt_path=str(ckpt),
        output_dir=str(out_dir),
        num_workers=0,
        **overrides,
    )


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_inference_on_one_patch_and_a_batch(dataset, checkpoint, tmp_path):
    one = sorted((dataset / "test").rglob("*.png"))[0]
    _infer(one, checkpoint, tmp_path / "one")
    rows = _rows(tmp_path / "one" / "predictions.csv")
    assert len(rows) == 1 and rows[0]["image"] == str(one)
    probs = np.array([float(rows[0][f"p_{c}"]) for c in CLASSES])
    assert np.isclose(probs.sum(), 1.0, atol=2e-3) and rows[0]["class"] == CLASSES[int(probs.argmax())]

    _infer(dataset / "test", checkpoint, tmp_path / "batch", batch_size=4)
    rows = _rows(tmp_path / "batch" / "predictions.csv")
    assert sorted(r["image"] for r in rows) == sorted(str(p) for p in (dataset / "test").rglob("*.png"))
    assert all(r["class"] in CLASSES for r in rows)


def _flipped_copy(ct_path: Path, out: Path) -> Path:
    """The same CT stored with its x and y voxel axes reversed, world positions unchanged."""
    img = nib.load(str(ct_path))
    data = np.asarray(img.dataobj)[::-1, ::-1]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ [data.shape[0] - 1, data.shape[1] - 1, 0] + img.affine[:3, 3]
    affine[:3, :2] *= -1
    return write_nifti(out, data, affine)


def _file_index(ct_path: Path, ras_index) -> list[int]:
    """The voxel index in the file of a voxel index of the file's RAS-reoriented array."""
    img = nib.load(str(ct_path))
    codes = nib.aff2axcodes(img.affine)
    assert [c in "LR" for c in codes] == [True, False, False] and codes[2] == "S", codes
    x, y, z = ras_index
    return [
        x if codes[0] == "R" else img.shape[0] - 1 - x,
        y if codes[1] == "A" else img.shape[1] - 1 - y,
        z,
    ]


def test_click_patch_is_the_prepared_patch(dataset, scripts, tmp_path):
    """A click on the centre of a prepared patch cuts the same pixels, whatever the CT's voxel order."""
    with open(dataset / "manifest.csv") as f:
        row = next(r for r in csv.DictReader(f))
    ct = dataset.parent / "ts" / row["subject"] / "ct.nii.gz"
    centre = [int(row["x0"]) + 16, int(row["y0"]) + 16, int(row["z"])]
    expected = np.asarray(Image.open(dataset / row["file"]))
    flipped = _flipped_copy(ct, tmp_path / "flipped.nii.gz")
    assert nib.aff2axcodes(nib.load(str(ct)).affine) != nib.aff2axcodes(nib.load(str(flipped)).affine)
    for source in (ct, flipped):
        patch = scripts.inputs.click_patch(source, _file_index(source, centre), patch_size=32)
        np.testing.assert_array_equal(patch, expected)


def test_inference_on_a_click(dataset, checkpoint, tmp_path):
    ct = dataset.parent / "ts" / "Subject_001" / "ct.nii.gz"
    _infer(ct, checkpoint, tmp_path, click=[64, 70, 5])
    patch = tmp_path / "ct_click_64_70_5.png"
    assert np.asarray(Image.open(patch)).shape == (64, 64)
    rows = _rows(tmp_path / "predictions.csv")
    assert len(rows) == 1 and rows[0]["image"] == str(patch)
    assert rows[0]["source"] == str(ct) and rows[0]["click"] == "64 70 5"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such file or folder"),
        ("ct_without_click", "needs a click position"),
        ("click_outside", "outside the volume"),
        ("corrupt_png", "not a readable image"),
        ("empty_folder", "holds no patch images"),
        ("text_file", "not a patch image"),
    ],
)
def test_bad_inference_input_fails_with_one_line(dataset, scripts, tmp_path, case, message):
    """The inference datalist (what ``inference.json`` calls first) rejects each bad input with one line."""
    ct = dataset.parent / "ts" / "Subject_001" / "ct.nii.gz"
    click = None
    if case == "missing":
        source = tmp_path / "nope.png"
    elif case == "ct_without_click":
        source = ct
    elif case == "click_outside":
        source, click = ct, [64, 70, 99]
    elif case == "corrupt_png":
        good = sorted((dataset / "test").rglob("*.png"))[0].read_bytes()
        source = tmp_path / "in" / "broken.png"
        source.parent.mkdir()
        source.write_bytes(good[: len(good) // 2])
    elif case == "empty_folder":
        source = tmp_path / "in"
        source.mkdir()
    else:
        source = tmp_path / "notes.txt"
        source.write_text("not an image")
    with pytest.raises(scripts.inputs.InputError, match=message) as err:
        scripts.inputs.inference_datalist(source, click, tmp_path / "out")
    assert str(source) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bundle_run_on_bad_input_writes_nothing(dataset, checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted((dataset / "test").rglob("*.png"))[0]
    (folder / "a.png").write_bytes(good.read_bytes())
    (folder / "b.png").write_bytes(good.read_bytes()[:100])
    with pytest.raises(Exception) as err:  # noqa: B017 (MONAI wraps it; the cause is checked below)
        _infer(folder, checkpoint, tmp_path / "out")
    root = err.value
    while root.__cause__ is not None and type(root).__name__ != "InputError":
        root = root.__cause__
    assert type(root).__name__ == "InputError" and "b.png: not a readable image" in str(root), repr(root)
    assert not (tmp_path / "out").exists()


def _torchvision_like_resnet18() -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet-18 layout: 3-channel stem, 1000-class head, ``module.`` prefixes."""
    from monai.networks.nets import resnet18

    torch.manual_seed(1)
    net = resnet18(spatial_dims=2, n_input_channels=3, num_classes=1000, conv1_t_stride=2, bias_downsample=False)
    return {f"module.{k}": v for k, v in net.state_dict().items()}


def test_pretrained_weights_load_with_a_report(scripts, tmp_path):
    from monai.networks.nets import resnet18

    state = _torchvision_like_resnet18()
    path = tmp_path / "imagenet_like.pt"
    torch.save({"state_dict": state}, path)
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=4, conv1_t_stride=2, bias_downsample=False)
    report = scripts.pretrained.load_pretrained(net, path)
    assert report["adapted"] == ["conv1.weight"]
    assert sorted(m.split()[0] for m in report["mismatched"]) == ["fc.bias", "fc.weight"]
    assert report["missing"] == ["fc.weight", "fc.bias"] and report["unexpected"] == []
    assert len(report["loaded"]) == len(state) - 3
    sd = net.state_dict()
    torch.testing.assert_close(sd["layer3.1.conv2.weight"], state["module.layer3.1.conv2.weight"])
    torch.testing.assert_close(sd["conv1.weight"], state["module.conv1.weight"].sum(1, keepdim=True))
    # the 1-channel stem responds to a grey image as the 3-channel one does to the same image on 3 channels
    grey = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(
        torch.nn.functional.conv2d(grey, sd["conv1.weight"]),
        torch.nn.functional.conv2d(grey.repeat(1, 3, 1, 1), state["module.conv1.weight"]),
    )


def test_pretrained_path_in_the_config_and_bad_files(scripts, tmp_path, dataset):
    from monai.bundle import ConfigParser

    path = tmp_path / "w.pt"
    state = _torchvision_like_resnet18()
    torch.save(state, path)
    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["train"]))
    parser.update({"pretrained_path": str(path), "dataset_dir": str(dataset), "bundle_root": str(ROOT)})
    net = parser.get_parsed_content("network")
    torch.testing.assert_close(net.state_dict()["layer4.0.bn1.weight"], state["module.layer4.0.bn1.weight"])

    with pytest.raises(scripts.inputs.InputError, match="weights file not found"):
        scripts.pretrained.load_pretrained(net, tmp_path / "missing.pt")
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(scripts.inputs.InputError, match="no weights match"):
        scripts.pretrained.load_pretrained(net, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(scripts.inputs.InputError, match="not a readable PyTorch state dict"):
        scripts.pretrained.load_pretrained(net, tmp_path / "junk.pt")


def test_deep_cnn_variant_is_a_deep_residual_classifier():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["inference", "cnn"]))
    parser["bundle_root"] = str(ROOT)
    net = parser.get_parsed_content("network_def")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= 15, f"only {len(convs)} convolutions"
    out = net(torch.rand(3, 1, 64, 64))
    assert out.shape == (3, 4)
    scripted = torch.jit.script(net.eval())
    torch.testing.assert_close(scripted(torch.ones(1, 1, 64, 64)), net(torch.ones(1, 1, 64, 64)))


def test_confusion_matrix_values_and_files(scripts, tmp_path):
    from ignite.engine import Engine

    conf = scripts.confusion
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 2, 2])
    cm = conf.confusion_matrix(labels, preds, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    scores = conf.per_class_scores(cm)
    np.testing.assert_allclose(scores["recall"], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(scores["precision"], [1.0, 2 / 3, 0.5])

    saver = conf.ConfusionMatrixSaver(str(tmp_path), ["a", "b", "c"])
    engine = Engine(lambda e, b: b)
    saver.attach(engine)
    batch = [
        {"pred": torch.nn.functional.one_hot(torch.tensor(p), 3).float(), "label": torch.tensor(t)}
        for p, t in zip(preds, labels, strict=True)
    ]
    engine.run([batch], max_epochs=1)
    np.testing.assert_array_equal(saver.matrix, cm)
    assert engine.state.metrics["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    rows = list(csv.reader(open(tmp_path / "confusion_matrix.csv")))
    assert rows[0] == ["true \\ predicted", "a", "b", "c"] and rows[2] == ["b", "0", "2", "1"]


def test_train_resume_and_evaluate_outputs(dataset, tmp_path):
    common = {
        "dataset_dir": str(dataset),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
        "patch_size": [32, 32],
        "batch_size": 8,
        "max_epochs": 1,
        "val_interval": 1,
        "num_workers": 0,
        "cache_rate": 1.0,
    }
    run_bundle(BUNDLE, ["train"], **common)
    assert (tmp_path / "models" / "checkpoint_epoch=1.pt").is_file()
    assert (tmp_path / "eval" / "val_confusion_matrix.png").is_file()
    assert list((tmp_path / "eval").glob("events.out.tfevents.*")), "no TensorBoard log"
    resumed = run_bundle(BUNDLE, ["train"], **{**common, "max_epochs": 2, "resume": True})
    assert resumed.parser.get_parsed_content("train#trainer").state.epoch == 2
    assert (tmp_path / "models" / "checkpoint_epoch=2.pt").is_file()
    run_bundle(BUNDLE, ["train", "evaluate"], **common)
    metrics = dict(line.split(",") for line in (tmp_path / "eval" / "metrics.csv").read_text().split())
    assert 0.0 <= float(metrics["val_accuracy"]) <= 1.0
    assert 0.0 <= float(metrics["balanced_accuracy"]) <= 1.0
    per_class = _rows(tmp_path / "eval" / "per_class.csv")
    assert [r["class"] for r in per_class] == CLASSES
    n_test = len(list((dataset / "test").rglob("*.png")))
    assert sum(int(r["support"]) for r in per_class) == n_test

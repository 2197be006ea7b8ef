"""The abdominal organs 2D bundle beyond the shared checks: the MobileNetV3 encoder and its timm weights, metrics,
evaluation outputs, fine-tuning, real DICOM inference and bad input."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from smoke_cases.abdominal_organs_ct_2d_segmentation import make_abdomen_slices

from monai_apps.bundles import BUNDLES_DIR, config_files, run_bundle

BUNDLE = "abdominal_organs_ct_2d_segmentation"
ROOT = BUNDLES_DIR / BUNDLE
SMALL = {"image_size": [64, 64], "batch_size": 4, "virtual_batch_size": 8, "sw_batch_size": 8, "num_workers": 0}

# timm ``mobilenetv3_large_100`` written out independently of the bundle: (stage, block) -> (kind, in, mid, out,
# kernel, SE reduced channels or 0), from timm's arch_def ``ds_r1_k3_s1_e1_c16_nre``, ``ir_r1_k3_s2_e4_c24_nre``...
TIMM_BLOCKS = {
    (0, 0): ("ds", 16, 16, 16, 3, 0),
    (1, 0): ("ir", 16, 64, 24, 3, 0),
    (1, 1): ("ir", 24, 72, 24, 3, 0),
    (2, 0): ("ir", 24, 72, 40, 5, 24),
    (2, 1): ("ir", 40, 120, 40, 5, 32),
    (2, 2): ("ir", 40, 120, 40, 5, 32),
    (3, 0): ("ir", 40, 240, 80, 3, 0),
    (3, 1): ("ir", 80, 200, 80, 3, 0),
    (3, 2): ("ir", 80, 184, 80, 3, 0),
    (3, 3): ("ir", 80, 184, 80, 3, 0),
    (4, 0): ("ir", 80, 480, 112, 3, 120),
    (4, 1): ("ir", 112, 672, 112, 3, 168),
    (5, 0): ("ir", 112, 672, 160, 5, 168),
    (5, 1): ("ir", 160, 960, 160, 5, 240),
    (5, 2): ("ir", 160, 960, 160, 5, 240),
    (6, 0): ("cn", 160, 960, 960, 1, 0),
}


def _bn(prefix: str, c: int) -> dict:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def timm_shapes() -> dict[str, tuple]:
    """Key -> shape of a timm ``mobilenetv3_large_100`` state dict, head included."""
    shapes = {"conv_stem.weight": (16, 3, 3, 3), **_bn("bn1", 16)}
    for (i, j), (kind, cin, mid, cout, k, se) in TIMM_BLOCKS.items():
        p = f"blocks.{i}.{j}"
        if kind == "ds":
            shapes |= {f"{p}.conv_dw.weight": (cin, 1, k, k), **_bn(f"{p}.bn1", cin)}
            shapes |= {f"{p}.conv_pw.weight": (cout, cin, 1, 1), **_bn(f"{p}.bn2", cout)}
        elif kind == "ir":
            shapes |= {f"{p}.conv_pw.weight": (mid, cin, 1, 1), **_bn(f"{p}.bn1", mid)}
            shapes |= {f"{p}.conv_dw.weight": (mid, 1, k, k), **_bn(f"{p}.bn2", mid)}
            if se:
                shapes |= {
                    f"{p}.se.conv_reduce.weight": (se, mid, 1, 1),
                    f"{p}.se.conv_reduce.bias": (se,),
                    f"{p}.se.conv_expand.weight": (mid, se, 1, 1),
                    f"{p}.se.conv_expand.bias": (mid,),
                }
            shapes |= {f"{p}.conv_pwl.weight": (cout, mid, 1, 1), **_bn(f"{p}.bn3", cout)}
        else:
            shapes |= {f"{p}.conv.weight": (cout, cin, 1, 1), **_bn(f"{p}.bn1", cout)}
    shapes |= {"conv_head.weight": (1280, 960, 1, 1), "conv_head.bias": (1280,)}
    shapes |= {"classifier.weight": (1000, 1280), "classifier.bias": (1000,)}
    return shapes


def timm_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randint(0, 100, (), generator=g) if not s else torch.randn(s, generator=g)
        for k, s in timm_shapes().items()
    }


def root_cause(err: BaseException) -> str:
    """The one-line message of the error a config expression raised (``monai.bundle`` wraps it)."""
    while err.__cause__ is not None:
        err = err.__cause__
    message = str(err)
    assert "\n" not in message, f"multi-line error: {message!r}"
    return message


@pytest.fixture()
def scripts():
    """This bundle's ``scripts`` package, imported from the bundle folder."""
    sys.path.insert(0, str(ROOT))
    try:
        yield importlib.import_module("scripts")
    finally:
        sys.path.remove(str(ROOT))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_abdomen_slices(tmp_path_factory.mktemp("abdomen"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Weights of the network (untrained: these tests check plumbing, geometry and outputs, not accuracy)."""
    sys.path.insert(0, str(ROOT))
    try:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(config_files(ROOT, ["inference"]))
        parser["bundle_root"] = str(ROOT)
        torch.manual_seed(0)
        net = parser.get_parsed_content("network_def")
    finally:
        sys.path.remove(str(ROOT))
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(net.state_dict(), path)
    return path


# ---------------------------------------------------------------------------------------------------- the network
def test_timm_reference_layout_has_the_published_parameter_count():
    count = sum(int(np.prod(s)) for k, s in timm_shapes().items() if not k.endswith(("running_mean", "running_var")))
    count -= sum(1 for k, s in timm_shapes().items() if k.endswith("num_batches_tracked"))
    assert count == 5_483_032  # mobilenetv3_large_100: 5.48 M parameters


def test_encoder_keys_and_shapes_are_timm_s(scripts):
    encoder = scripts.networks.MobileNetV3Encoder()
    own = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    reference = {k: s for k, s in timm_shapes().items() if not k.startswith(("conv_head", "classifier"))}
    assert own == reference


def test_pretrained_timm_state_dict_loads_key_for_key(scripts, tmp_path):
    state = timm_state_dict()
    torch.save(state, tmp_path / "mobilenetv3_large_100.pth")
    net = scripts.networks.MobileNetV3UNet(
        in_channels=3, out_channels=6, pretrained_path=tmp_path / "mobilenetv3_large_100.pth"
    )
    own = net.encoder.state_dict()
    for key in ("conv_stem.weight", "blocks.2.0.se.conv_reduce.weight", "blocks.6.0.bn1.running_var"):
        torch.testing.assert_close(own[key], state[key])
    # one channel: the RGB stem weights are summed (timm's adapt_input_conv)
    net1 = scripts.networks.MobileNetV3UNet(
        in_channels=1, out_channels=6, pretrained_path=tmp_path / "mobilenetv3_large_100.pth"
    )
    torch.testing.assert_close(net1.encoder.conv_stem.weight, state["conv_stem.weight"].sum(1, keepdim=True))
    # wrapped and prefixed (segmentation_models.pytorch / DataParallel), in a checkpoint dict
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    report = scripts.networks.load_timm_mobilenetv3(scripts.networks.MobileNetV3Encoder(), tmp_path / "wrapped.pt")
    assert report["loaded"] == len(own) and report["ignored_head"] == [
        "classifier.bias",
        "classifier.weight",
        "conv_head.bias",
        "conv_head.weight",
    ]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("blocks.3.1.conv_dw.weight"), r"1 missing \[blocks.3.1.conv_dw.weight\]"),
        (lambda s: s.update({"blocks.9.0.conv.weight": torch.zeros(1)}), r"1 unexpected \[blocks.9.0.conv.weight\]"),
        (lambda s: s.update({"blocks.1.0.conv_pw.weight": torch.zeros(32, 16, 1, 1)}), r"1 with other shapes"),
    ],
)
def test_a_wrong_weights_file_is_reported_clearly(scripts, tmp_path, edit, message):
    state = timm_state_dict()
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=message) as err:
        scripts.networks.MobileNetV3UNet(pretrained_path=tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(err.value)
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        scripts.networks.MobileNetV3UNet(pretrained_path=tmp_path / "none.pth")


@pytest.mark.parametrize("in_channels, size", [(3, 64), (1, 96), (3, 160)])
def test_unet_output_shape_and_registered_backbone(scripts, in_channels, size):
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

    assert FLEXUNET_BACKBONE.register_dict["mobilenetv3_large_100"]["feature_channel"] == (16, 24, 40, 112, 960)
    net = scripts.networks.MobileNetV3UNet(in_channels=in_channels, out_channels=6).eval()
    with torch.no_grad():
        assert net(torch.rand(2, in_channels, size, size)).shape == (2, 6, size, size)


def test_pretrained_weights_from_the_config(scripts, tmp_path):
    from monai.bundle import ConfigParser

    torch.save(timm_state_dict(3), tmp_path / "w.pth")
    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["train"]))
    parser.update({"bundle_root": str(ROOT), "pretrained_path": str(tmp_path / "w.pth"), "in_channels": 1})
    net = parser.get_parsed_content("network_def")
    torch.testing.assert_close(
        net.encoder.conv_stem.weight, timm_state_dict(3)["conv_stem.weight"].sum(1, keepdim=True)
    )


# ------------------------------------------------------------------------------------------------------- metrics
def test_pixel_auc_matches_sklearn_and_accuracy_counts_pixels(scripts):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (2, 20, 20, 4))
    probs = rng.random((2, 3, 20, 20, 4)) + 0.8 * np.eye(3)[label].transpose(0, 4, 1, 2, 3)
    probs = probs / probs.sum(1, keepdims=True)
    onehot = np.eye(3)[label].transpose(0, 4, 1, 2, 3)
    auc = scripts.metrics.PixelAUC(2, bins=100000)
    auc.reset()
    auc.update(([torch.tensor(p) for p in probs], [torch.tensor(y) for y in onehot]))
    expected = roc_auc_score((label == 2).ravel(), probs[:, 2].ravel())
    assert abs(auc.compute() - expected) < 1e-4
    acc = scripts.metrics.PixelAccuracy()
    acc.reset()
    acc.update(([torch.tensor(p) for p in probs], [torch.tensor(y) for y in onehot]))
    assert acc.compute() == pytest.approx(float((probs.argmax(1) == label).mean()))


@pytest.mark.parametrize(
    "pos, neg, expected", [([0, 0, 5], [5, 0, 0], 1.0), ([5, 0, 0], [0, 0, 5], 0.0), ([2, 2], [2, 2], 0.5)]
)
def test_roc_from_histograms_known_areas(scripts, pos, neg, expected):
    assert scripts.metrics.roc_from_histograms(np.array(pos), np.array(neg))[2] == pytest.approx(expected)
    assert np.isnan(scripts.metrics.roc_from_histograms(np.zeros(3), np.ones(3))[2])


def test_gradient_accumulation_reaches_the_virtual_batch():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["train"]))
    assert parser.get_parsed_content("train#trainer#accumulation_steps") == 512 // 32
    parser.read_config(config_files(ROOT, ["train", "cpu"]))
    assert parser.get_parsed_content("train#trainer#accumulation_steps") == 32 // 16


# ------------------------------------------------------------------------------------------------ workflows
def test_evaluation_writes_metrics_and_pngs(dataset, checkpoint, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(checkpoint.read_bytes())
    run_bundle(
        BUNDLE,
        ["train", "evaluate"],
        dataset_dir=str(dataset),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        **SMALL,
    )
    out = tmp_path / "eval"
    metrics = dict(line.split(",") for line in (out / "metrics.csv").read_text().split())
    for name in ("liver", "spleen", "kidney_left", "kidney_right", "bowel"):
        for kind in ("dice", "iou", "accuracy", "auc"):
            assert f"val_{name}_{kind}" in metrics
        assert 0.0 <= float(metrics[f"val_{name}_accuracy"]) <= 1.0
    for png in ("confusion_matrix.png", "roc_curves.png"):
        assert (out / png).stat().st_size > 1000
    assert list((out / "examples").glob("*.png"))
    rows = [line.split(",") for line in (out / "confusion_matrix.csv").read_text().splitlines()[1:]]
    test_volume = json.loads((dataset / "datalist.json").read_text())["volumes"]["test"][0]
    # TotalSegmentator subjects are all <subject>/ct.nii.gz: the example is named after the subject
    assert [p.name for p in (out / "examples").glob("*.png")] == [f"{Path(test_volume['image']).parent.name}_ct.png"]
    label = np.asarray(nib.load(dataset / test_volume["label"]).dataobj)
    counts = np.array([[int(v) for v in row[1:]] for row in rows])
    assert counts.sum() == label.size, "the confusion matrix does not count every voxel of the original grid"
    np.testing.assert_array_equal(counts.sum(axis=1), np.bincount(label.ravel(), minlength=6))


@pytest.mark.parametrize("zoom", [0.6, 1.0])
def test_scanner_augmentation_zooms_image_and_label_together(scripts, dataset, zoom):
    """``scanner_augment.json``: zoom (a wider field of view) on image and mask alike, before the other transforms."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["train", "scanner_augment"]))
    parser.update({"bundle_root": str(ROOT), "dataset_dir": str(dataset), **SMALL, "zoom_range": [zoom, zoom]})
    parser["train#scanner_augmentation#0#prob"] = 1.0
    parser["train#scanner_augmentation#1#prob"] = 0.0
    parser["train#scanner_augmentation#2#prob"] = 0.0
    sys.path.insert(0, str(ROOT))
    try:
        names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
        assert names.index("RandZoomd") == names.index("Resized") + 2 and names.index("RandZoomd") < names.index(
            "RandRotated"
        )
        slices = scripts.datalist.slice_datalist(dataset, keys=("image", "label", "classes"))
        item = next({"image": i["image"], "label": i["label"]} for i in slices if 1 in i["classes"])  # liver
        plain = Compose(parser.get_parsed_content("train#deterministic_transforms"))(item)
        zoomed = Compose(parser.get_parsed_content("train#scanner_augmentation"))(dict(plain))
    finally:
        sys.path.remove(str(ROOT))
    assert zoomed["image"].shape == plain["image"].shape == (1, 64, 64)
    assert set(np.unique(zoomed["label"].numpy())) <= set(np.unique(plain["label"].numpy()))
    ratio = float((zoomed["label"] > 0).sum()) / float((plain["label"] > 0).sum())
    assert ratio == pytest.approx(zoom**2, abs=0.12)
    if zoom < 1:
        assert float(zoomed["image"][0, 0, 0]) == 0.0, "the widened field of view is padded with air (0)"


def test_training_curve_keeps_the_earlier_epochs_of_a_resumed_run(scripts, tmp_path):
    from ignite.engine import Engine, Events

    csv_path = tmp_path / "training_curve.csv"
    csv_path.write_text("epoch,train_loss,val_loss,val_mean_dice\n1,0.5,,\n2,0.4,0.3,0.6\n3,0.9,,\n")
    trainer = Engine(lambda engine, batch: {"loss": 0.25})
    scripts.report.TrainingCurves(str(tmp_path), validator=None).attach(trainer)

    @trainer.on(Events.STARTED)
    def resume_from_epoch_2(engine):  # as CheckpointLoader does, after the curve handler saw STARTED
        engine.state.epoch, engine.state.iteration = 2, 4

    trainer.run([0, 1], max_epochs=3)
    rows = csv_path.read_text().splitlines()
    # epochs 1-2 kept from the interrupted run; epoch 3 (stale row of that run) replaced by this run's
    assert rows[1:] == ["1,0.5,,", "2,0.4,0.3,0.6", "3,0.25,,"]
    assert (tmp_path / "training_curve.png").stat().st_size > 1000


def test_finetune_profile_starts_from_given_weights(dataset, checkpoint, tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, ["train", "finetune"]))
    parser.update({"bundle_root": str(ROOT), "finetune_from": str(checkpoint), "dataset_dir": str(dataset), **SMALL})
    sys.path.insert(0, str(ROOT))
    try:
        net = parser.get_parsed_content("network")
        assert parser.get_parsed_content("learning_rate") == 5e-5 and parser.get_parsed_content("max_epochs") == 10
        state = torch.load(checkpoint, weights_only=True)
        for key in ("encoder.conv_stem.weight", "segmentation_head.0.weight"):
            torch.testing.assert_close(net.state_dict()[key], state[key])
        parser["finetune_from"] = str(tmp_path / "none.pt")
        parser.parse()
        with pytest.raises(Exception) as err:
            parser.get_parsed_content("network")
        assert "none.pt: checkpoint to fine-tune from not found" in root_cause(err.value)
    finally:
        sys.path.remove(str(ROOT))


@pytest.mark.real
def test_inference_on_the_real_dicom_series_keeps_its_geometry(real_dir, checkpoint, tmp_path):
    from monai.transforms import LoadImage

    source = real_dir / "totalsegmentator" / "reference_files" / "example_ct_dicom"
    run_bundle(
        BUNDLE, ["inference"], input_path=str(source), ckpt_path=str(checkpoint), output_dir=str(tmp_path), **SMALL
    )
    outputs = list(tmp_path.glob("*_seg.nii.gz"))
    assert len(outputs) == 1
    ref = LoadImage(image_only=True)(str(source))
    seg = nib.load(outputs[0])
    assert seg.shape == tuple(ref.shape) == (512, 512, 20) and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(seg.affine, np.asarray(ref.affine), atol=1e-3)
    assert set(np.unique(np.asarray(seg.dataobj))) <= set(range(6))


def test_inference_refuses_a_missing_input_and_writes_nothing(checkpoint, tmp_path):
    with pytest.raises(Exception) as err:
        run_bundle(
            BUNDLE,
            ["inference"],
            input_path=str(tmp_path / "nope.nii.gz"),
            ckpt_path=str(checkpoint),
            output_dir=str(tmp_path / "out"),
            **SMALL,
        )
    assert "nope.nii.gz: no such file or folder" in root_cause(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_evaluation_refuses_an_image_label_pair_on_different_grids(dataset, checkpoint, tmp_path):
    volume = json.loads((dataset / "datalist.json").read_text())["volumes"]["test"][0]
    label = nib.load(dataset / volume["label"])
    cropped = tmp_path / "cropped.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj)[:, :, :-3], label.affine), cropped)
    (tmp_path / "list.json").write_text(json.dumps([{"image": volume["image"], "label": str(cropped)}]))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(checkpoint.read_bytes())
    with pytest.raises(Exception) as err:
        run_bundle(
            BUNDLE,
            ["train", "evaluate"],
            dataset_dir=str(dataset),
            eval_datalist_file=str(tmp_path / "list.json"),
            ckpt_dir=str(tmp_path / "models"),
            output_dir=str(tmp_path / "eval"),
            **SMALL,
        )
    message = root_cause(err.value)
    assert "cropped.nii.gz: label shape" in message and "does not match image shape" in message

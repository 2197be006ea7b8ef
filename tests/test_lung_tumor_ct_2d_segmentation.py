"""The lung tumour 2D bundle beyond the shared checks: oversampling, skipped slices, the lung-recipe normalisation
matching the slice pipeline, NRRD inference on the real chest CTs, the DiceCE variant and bad input."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from smoke_cases.lung_tumor_ct_2d_segmentation import make_lung_slices

from monai_apps.bundles import BUNDLES_DIR, config_files, run_bundle

BUNDLE = "lung_tumor_ct_2d_segmentation"
ROOT = BUNDLES_DIR / BUNDLE
SMALL = {"image_size": [64, 64], "features": [8, 8, 16, 32, 64, 8], "batch_size": 4, "num_workers": 0}


def root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    message = str(err)
    assert "\n" not in message, f"multi-line error: {message!r}"
    return message


@pytest.fixture()
def scripts():
    sys.path.insert(0, str(ROOT))
    try:
        yield importlib.import_module("scripts")
    finally:
        sys.path.remove(str(ROOT))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_lung_slices(tmp_path_factory.mktemp("lung"))


@pytest.fixture(scope="module")
def context_dataset(dataset) -> Path:
    """The smoke cohort's slices prepared again for the 2.5D variant (one neighbour a side)."""
    from monai_apps.data.slices import prepare_slices

    source = json.loads((dataset / "datalist.json").read_text())["source"]
    out = dataset.parent / "slices_context1"
    opts = {"classes": "lung_tumour", "normalize": "lung", "size": (64, 64), "keep_empty": 0.5, "allow_empty": True}
    return prepare_slices(source, out, context=1, progress=False, **opts).parent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=SMALL["features"])
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(net.state_dict(), path)
    return path


def _parser(*names: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, list(names)))
    parser.update({"bundle_root": str(ROOT), **overrides})
    return parser


def _parsed(parser, *ids: str) -> list:
    """Parsed config items, with the bundle's ``scripts`` importable while they are built."""
    sys.path.insert(0, str(ROOT))
    try:
        return [parser.get_parsed_content(i) for i in ids]
    finally:
        sys.path.remove(str(ROOT))


def test_sampler_weights_balance_tumour_and_empty_slices(scripts, dataset):
    items = scripts.datalist.slice_datalist(dataset, keys=["image", "label", "classes"])
    weights = np.array(scripts.datalist.class_balanced_weights(items))
    tumour = np.array([bool(i["classes"]) for i in items])
    assert 0 < tumour.sum() < len(items)
    assert weights[tumour].sum() == pytest.approx(weights[~tumour].sum())
    sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=20000, replacement=True)
    drawn = tumour[np.array(list(sampler))]
    assert abs(drawn.mean() - 0.5) < 0.03, "tumour slices are not drawn half of the time"


def _label_items(tmp_path: Path, areas: list[int]) -> list[dict]:
    """Training items whose 16 x 16 labels hold ``area`` tumour pixels each."""
    items = []
    for i, area in enumerate(areas):
        label = np.zeros((16, 16), np.uint8)
        label.flat[:area] = 1
        np.save(tmp_path / f"label_{i}.npy", label)
        items.append({"label": str(tmp_path / f"label_{i}.npy"), "classes": ["tumour"] if area else []})
    return items


@pytest.mark.parametrize(
    ("power", "expected_tumour"),
    [
        (0.0, [1 / 3, 1 / 3, 1 / 3]),  # the recipe: every tumour slice alike
        (0.5, [0.5 / 0.875, 0.25 / 0.875, 0.125 / 0.875]),  # areas 4, 16, 64: weights 1/2, 1/4, 1/8
        (1.0, [16 / 21, 4 / 21, 1 / 21]),
    ],
)
def test_size_balanced_weights_favour_small_tumour_sections(scripts, tmp_path, power, expected_tumour):
    items = _label_items(tmp_path, [4, 16, 64, 0, 0])
    assert scripts.sampling.tumour_areas(items) == [4, 16, 64, 0, 0]
    weights = np.array(scripts.sampling.size_balanced_weights(items, power))
    total = weights.sum()
    assert weights[:3].sum() / total == pytest.approx(0.5), "tumour slices no longer drawn half of the time"
    np.testing.assert_allclose(weights[:3] / weights[:3].sum(), expected_tumour, rtol=1e-9)
    np.testing.assert_allclose(weights[3:], weights[3], rtol=1e-12)
    if power == 0:
        assert list(weights) == scripts.datalist.class_balanced_weights(items)


def test_size_balanced_weights_reject_bad_input(scripts, tmp_path):
    items = _label_items(tmp_path, [4, 0])
    with pytest.raises(scripts.inputs.InputError, match="size_power must be 0 or more"):
        scripts.sampling.size_balanced_weights(items, -0.5)
    (tmp_path / "label_0.npy").write_bytes(b"not a numpy file")
    with pytest.raises(scripts.inputs.InputError, match=r"label_0\.npy: cannot read the slice label"):
        scripts.sampling.size_balanced_weights(items, 0.5)


def test_config_wires_the_weighted_sampler_and_skips_the_first_slices(dataset):
    parser = _parser("train", dataset_dir=str(dataset), skip_first=4, num_workers=0)
    items, loader = _parsed(parser, "train#items", "train#dataloader")
    assert min(i["slice"] for i in items) >= 4
    data = json.loads((dataset / "datalist.json").read_text())
    assert len(items) == sum(1 for s in data["training"] if s["slice"] >= 4) < len(data["training"])
    assert isinstance(loader.sampler, torch.utils.data.WeightedRandomSampler)
    assert len(loader.sampler) == len(items)
    assert parser.get_parsed_content("skip_first") == 4
    balanced = np.array([1.0 / sum(bool(i["classes"]) == bool(j["classes"]) for j in items) for i in items])
    np.testing.assert_allclose(loader.sampler.weights.numpy(), balanced)  # size_power 0: the recipe's weights
    sized = _parser("train", dataset_dir=str(dataset), skip_first=4, num_workers=0, size_power=0.5)
    (sized_loader,) = _parsed(sized, "train#dataloader")
    tumour = np.array([bool(i["classes"]) for i in items])
    sized_weights = sized_loader.sampler.weights.numpy()
    assert sized_weights[tumour].sum() == pytest.approx(sized_weights[~tumour].sum())
    assert not np.allclose(sized_weights[tumour], sized_weights[tumour][0]), "size_power does not reach the sampler"
    assert _parser("train").get_parsed_content("skip_first") == 30


def test_lung_normalisation_of_the_bundle_matches_the_prepared_slices(scripts, dataset):
    """Validation/inference preprocessing of a whole volume gives the very slices the pipeline wrote."""
    parser = _parser("train", dataset_dir=str(dataset), image_size=[64, 64])
    sys.path.insert(0, str(ROOT))
    try:
        transform = parser.get_parsed_content("validate#preprocessing")
    finally:
        sys.path.remove(str(ROOT))
    data = json.loads((dataset / "datalist.json").read_text())
    item = data["training"][0]
    volume = next(v for v in data["volumes"]["training"] if v["patient"] == item["patient"])
    out = transform({"image": volume["image"], "label": str(dataset / volume["label"])})
    np.testing.assert_allclose(
        np.asarray(out["image"][0, :, :, item["slice"]]), np.load(dataset / item["image"]), atol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(out["label"][0, :, :, item["slice"]]), np.load(dataset / item["label"]))
    assert float(out["image"].min()) >= -1000 / 3071 - 1e-6 and float(out["image"].max()) <= 1.0


def test_dicece_variant_is_a_drop_in_loss():
    from monai.losses import DiceCELoss

    loss = _parser("train", "dicece").get_parsed_content("loss")
    assert isinstance(loss, DiceCELoss)
    logits, target = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.7).float()
    assert torch.isfinite(loss(logits, target))


@pytest.mark.real
@pytest.mark.parametrize("case", ["lung1", "lung2"])
def test_inference_on_the_real_nrrd_chest_ct_keeps_its_geometry(real_dir, checkpoint, tmp_path, case):
    import SimpleITK as sitk

    source = real_dir / "pyradiomics" / f"{case}_image.nrrd"
    run_bundle(
        BUNDLE, ["inference"], input_path=str(source), ckpt_path=str(checkpoint), output_dir=str(tmp_path), **SMALL
    )
    out = nib.load(tmp_path / f"{case}_image_seg.nii.gz")
    ref = sitk.ReadImage(str(source))
    assert out.shape == ref.GetSize()
    # NIfTI (RAS) vs ITK (LPS): same voxel size and the same physical position of the first voxel
    np.testing.assert_allclose(np.linalg.norm(out.affine[:3, :3], axis=0), ref.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(out.affine[:3, 3] * [-1, -1, 1], ref.GetOrigin(), atol=1e-3)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1}


def test_evaluation_reports_dice_and_pngs(dataset, checkpoint, tmp_path):
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
    metrics = dict(line.split(",") for line in (tmp_path / "eval" / "metrics.csv").read_text().split())
    assert {"val_mean_dice", "val_tumour_dice", "val_tumour_auc", "val_pixel_accuracy"} <= set(metrics)
    assert (tmp_path / "eval" / "roc_curves.png").is_file() and (tmp_path / "eval" / "confusion_matrix.png").is_file()
    per_case = (tmp_path / "eval" / "val_tumour_dice_raw.csv").read_text().splitlines()
    assert len(per_case) == 2, per_case  # header + the one held-out volume


def test_inference_refuses_a_non_ct_dicom_series(checkpoint, tmp_path):
    from monai_apps.data.synthetic_chest import generate_chest_ct
    from monai_apps.data.writers import write_dicom_series

    ct = generate_chest_ct(1, shape=(32, 32, 8), spacing=(8.0, 8.0, 20.0))
    write_dicom_series(tmp_path / "series", ct.image, ct.affine, modality="MR")
    with pytest.raises(Exception) as err:
        run_bundle(
            BUNDLE,
            ["inference"],
            input_path=str(tmp_path / "series"),
            ckpt_path=str(checkpoint),
            output_dir=str(tmp_path / "out"),
            **SMALL,
        )
    assert "DICOM modality MR is not CT" in root_cause(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("patch", [None, [32, 32]])
def test_training_patches_are_cropped_around_tumour_half_of_the_time(dataset, patch):
    """``train_patch_size`` crops training slices (tumour-centred for half of the crops); null keeps whole slices."""
    parser = _parser(
        "train", dataset_dir=str(dataset), image_size=[64, 64], train_patch_size=patch, skip_first=0, num_workers=0
    )
    items, transform = _parsed(parser, "train#items", "train#preprocessing")
    tumour_item = next(i for i in items if i["classes"])
    torch.manual_seed(0)
    transform.set_random_state(seed=0)
    outs = [transform({"image": tumour_item["image"], "label": tumour_item["label"]}) for _ in range(40)]
    outs = [o[0] if isinstance(o, list) else o for o in outs]
    shapes = {tuple(o["image"].shape) for o in outs}
    assert shapes == {(1, *(patch or [64, 64]))}
    with_tumour = np.mean([float(o["label"].sum()) > 0 for o in outs])
    if patch is None:
        assert with_tumour > 0.9  # whole slices keep the tumour (rotation may shave a pixel off a small one)
    else:
        assert 0.5 <= with_tumour < 1.0, with_tumour  # pos:neg 1:1, background crops miss a 2-4 pixel tumour mostly


def test_learning_rate_follows_a_cosine_schedule_to_the_floor():
    parser = _parser("train", learning_rate=1e-3, lr_min_factor=0.01, max_epochs=10)
    net = torch.nn.Linear(2, 1)
    parser.update({"network": net})
    optimizer = parser.get_parsed_content("optimizer")
    scheduler = parser.get_parsed_content("lr_scheduler")
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(lrs[:-1], lrs[1:], strict=True))


def test_context_inferer_stacks_neighbouring_slices_as_channels(scripts):
    """Slice k sees slices k-1, k, k+1 (clamped at the ends); context 0 matches MONAI's SliceInferer."""
    from monai.data import MetaTensor
    from monai.inferers import SliceInferer

    volume = MetaTensor(torch.arange(2 * 6, dtype=torch.float32).reshape(1, 2, 1, 1, 6).expand(1, 2, 4, 3, 6))
    volume = volume + torch.rand(1, 2, 4, 3, 6) * 0.01  # channel c, slice k: 6c + k (+ noise)
    inferer = scripts.context.ContextSliceInferer(context=1, sw_batch_size=4)
    stack = inferer.stack(volume[0].as_tensor(), 0, 6)
    assert stack.shape == (6, 6, 4, 3)
    np.testing.assert_array_equal(
        stack[:, :, 0, 0].round().numpy()[[0, 3, 5]], [[0, 0, 1, 6, 6, 7], [2, 3, 4, 8, 9, 10], [4, 5, 5, 10, 11, 11]]
    )
    out = inferer(volume, lambda x: x[:, [1, 4]] * 2)  # the centre slice of both channels, doubled
    assert isinstance(out, MetaTensor) and out.shape == volume.shape
    torch.testing.assert_close(out.as_tensor(), volume.as_tensor() * 2)

    net = torch.nn.Conv2d(2, 1, 3, padding=1)
    plain = scripts.context.ContextSliceInferer(context=0, sw_batch_size=4)(volume, net)
    reference = SliceInferer(roi_size=(4, 3), spatial_dim=2, sw_batch_size=4, progress=False)(volume, net)
    torch.testing.assert_close(plain.as_tensor(), torch.as_tensor(reference), atol=1e-5, rtol=1e-5)
    assert isinstance(scripts.context.slice_inferer([4, 3], 4, context=0), SliceInferer)
    with pytest.raises(ValueError, match="context must be >= 0"):
        scripts.context.ContextSliceInferer(context=-1)


def test_context_slices_must_match_the_prepared_slices(scripts, dataset, context_dataset):
    c1 = context_dataset / "datalist.json"
    items = scripts.context.context_slice_datalist(c1, 1)
    first = np.load(items[0]["image"])
    assert first.shape == (3, 64, 64)
    plain = dataset / "slices" / Path(items[0]["image"]).relative_to(c1.parent / "slices")
    np.testing.assert_array_equal(first[1], np.load(plain))  # the centre channel is the 2D slice itself
    with pytest.raises(scripts.inputs.InputError, match="slices prepared with context 1 but context_slices is 0"):
        scripts.context.context_slice_datalist(c1, 0)
    with pytest.raises(scripts.inputs.InputError, match="slices prepared with context 0 but context_slices is 2"):
        scripts.context.context_slice_datalist(dataset, 2)


def test_context_variant_trains_and_predicts_a_volume(tmp_path, context_dataset):
    c1 = context_dataset / "datalist.json"
    run_bundle(
        BUNDLE,
        ["train", "context"],
        dataset_dir=str(c1.parent),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        max_epochs=1,
        skip_first=2,
        **SMALL,
    )
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert state["conv_0.conv_0.conv.weight"].shape[1] == 3
    volume = json.loads(c1.read_text())["volumes"]["test"][0]["image"]
    run_bundle(
        BUNDLE,
        ["inference", "context"],
        input_path=volume,
        ckpt_path=str(tmp_path / "models" / "model.pt"),
        output_dir=str(tmp_path / "out"),
        **SMALL,
    )
    out = nib.load(next((tmp_path / "out").glob("*_seg.nii.gz")))
    assert out.shape == nib.load(volume).shape


def test_checkpoint_selection_last_saves_the_final_epoch_as_the_model(tmp_path, dataset):
    """``checkpoint_selection`` ``last``: ``model.pt`` holds the final epoch's weights, not the best validation's."""
    run_bundle(
        BUNDLE,
        ["train"],
        dataset_dir=str(dataset),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        max_epochs=3,
        val_interval=1,
        skip_first=2,
        max_slices=24,
        learning_rate=0.01,
        checkpoint_selection="last",
        **SMALL,
    )
    model = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    final = torch.load(tmp_path / "models" / "checkpoint_epoch=3.pt", weights_only=True)["model"]
    assert model.keys() == final.keys()
    for key in model:
        torch.testing.assert_close(model[key], final[key], rtol=0, atol=0, msg=f"{key} is not the final epoch's")


@pytest.mark.parametrize(("selection", "key_metric_savers", "final_saver"), [("best", 1, False), ("last", 0, True)])
def test_checkpoint_selection_picks_one_saver_of_model_pt(dataset, selection, key_metric_savers, final_saver):
    from monai.handlers import CheckpointSaver

    parser = _parser("train", dataset_dir=str(dataset), checkpoint_selection=selection, num_workers=0, skip_first=2)
    handlers, saver = _parsed(parser, "validate#handlers", "train#final_model_saver")
    savers = [h for h in handlers if isinstance(h, CheckpointSaver)]
    assert len(savers) == key_metric_savers
    assert all(h._key_metric_checkpoint is not None for h in savers)
    assert (saver is not None) == final_saver
    if final_saver:  # the run section attaches it on completion only: an interrupted run leaves no model.pt
        from ignite.engine import Events

        run = parser.get("run")
        attach = next(i for i, expr in enumerate(run) if "final_model_saver" in expr)
        trainer, saver, _ = _parsed(parser, "train#trainer", "train#final_model_saver", f"run#{attach}")
        assert trainer.has_event_handler(saver.completed, Events.COMPLETED)
        assert not trainer.has_event_handler(saver.exception_raised, Events.EXCEPTION_RAISED)


def test_checkpoint_selection_rejects_unknown_choices(scripts, dataset):
    assert scripts.checkpoints.check_selection("best") == "best"
    parser = _parser("train", dataset_dir=str(dataset), checkpoint_selection="final", num_workers=0)
    with pytest.raises(Exception) as err:
        _parsed(parser, "train#final_model_saver")
    assert root_cause(err.value) == "checkpoint_selection must be one of best, last, got 'final'"


@pytest.mark.parametrize(
    ("power", "small", "large"),
    [(0.0, 1.0, 1.0), (1.0, 50.0, 1.0), (0.5, 50.0**0.5, 1.0)],  # sections of 4 and 400 pixels, reference area 200
)
def test_lesion_weights_give_small_sections_more_weight(scripts, power, small, large):
    mask = np.zeros((40, 40), np.uint8)
    mask[1:3, 1:3] = 1  # 4 pixels
    mask[15:35, 15:35] = 1  # 400 pixels
    mask[5, 30] = mask[6, 31] = 1  # two pixels touching at a corner: one 8-connected section of 2
    w = scripts.lesion_weights.lesion_weight_map(mask, power=power, reference_area=200, max_weight=50)
    assert w.dtype == np.float32 and w.shape == mask.shape
    assert w[0, 0] == 1.0 and w[38, 38] == 1.0  # background
    assert w[1, 1] == pytest.approx(small) and w[20, 20] == pytest.approx(large)
    assert w[5, 30] == w[6, 31] == pytest.approx(min(50.0, 100.0**power))  # area 2, capped at 50


def test_lesion_weight_transform_adds_a_weight_channel_that_moves_with_the_mask(scripts):
    label = torch.zeros(1, 32, 32)
    label[0, 4:6, 4:6] = 1
    out = scripts.lesion_weights.LesionWeightd("label", power=1.0, reference_area=200)({"label": label})["label"]
    assert tuple(out.shape) == (2, 32, 32)
    torch.testing.assert_close(out[0], label[0])
    assert out[1, 4, 4] == 50.0 and out[1, 20, 20] == 1.0
    with pytest.raises(scripts.inputs.InputError, match="must have one channel"):
        scripts.lesion_weights.LesionWeightd("label")({"label": torch.zeros(2, 8, 8)})
    with pytest.raises(scripts.inputs.InputError, match="power >= 0"):
        scripts.lesion_weights.LesionWeightd("label", power=-1.0)


def test_lesion_weighted_loss_equals_dicece_with_unit_weights_and_favours_weighted_pixels(scripts):
    from monai.losses import DiceCELoss

    loss = scripts.lesion_weights.LesionWeightedDiceCELoss()
    torch.manual_seed(0)
    logits, mask = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.7).float()
    reference = DiceCELoss(sigmoid=True, batch=True, lambda_dice=0.5, lambda_ce=0.5)(logits, mask)
    torch.testing.assert_close(loss(logits, mask), reference)
    torch.testing.assert_close(loss(logits, torch.cat([mask, torch.ones_like(mask)], 1)), reference)
    # a missed small section costs more once its pixels weigh 50
    target = torch.zeros(1, 1, 16, 16)
    target[0, 0, 2:4, 2:4] = 1
    target[0, 0, 8:16, 8:16] = 1
    logits = torch.where(target > 0, 4.0, -4.0)
    logits[0, 0, 2:4, 2:4] = -4.0  # the small section missed, the large one found
    weights = torch.ones_like(target)
    weights[0, 0, 2:4, 2:4] = 50.0
    assert loss(logits, torch.cat([target, weights], 1)) > 3 * loss(logits, target)
    with pytest.raises(scripts.inputs.InputError, match="target has 3 channels"):
        loss(logits, torch.zeros(1, 3, 16, 16))


def test_lesion_weights_variant_wires_the_transform_and_the_loss(dataset):
    opts = {"dataset_dir": str(dataset), "image_size": [64, 64], "skip_first": 0, "num_workers": 0}
    parser = _parser("train", "dicece", "lesion_weights", **opts)
    loss, items, transform = _parsed(parser, "loss", "train#items", "train#preprocessing")
    assert type(loss).__name__ == "LesionWeightedDiceCELoss"
    tumour_item = next(i for i in items if i["classes"])
    out = transform({"image": tumour_item["image"], "label": tumour_item["label"]})
    assert tuple(out["label"].shape) == (2, 64, 64)
    assert float(out["label"][1].max()) > 1.0  # the smoke slices' tumours are under the reference area
    default = _parser("train", "dicece", **opts)
    (plain,) = _parsed(default, "train#preprocessing")
    assert tuple(plain({"image": tumour_item["image"], "label": tumour_item["label"]})["label"].shape) == (1, 64, 64)


def _small_object_removal(names: tuple[str, ...], key: str, **overrides):
    (post,) = _parsed(_parser(*names, **overrides), key)
    return [t for t in post.transforms if type(t).__name__ == "RemoveSmallObjectsd"]


@pytest.mark.parametrize(
    ("names", "key"),
    [
        (("inference",), "postprocessing"),
        (("train",), "validate#postprocessing"),
        (("train", "evaluate"), "validate#postprocessing"),
    ],
)
def test_min_tumour_volume_removes_predicted_components_by_their_volume_in_mm3(dataset, names, key):
    from monai.data import MetaTensor

    opts = {"dataset_dir": str(dataset), "num_workers": 0}
    assert _small_object_removal(names, key, **opts) == []  # 0 (the default) leaves the prediction as it is
    (remove,) = _small_object_removal(names, key, min_tumour_volume=500.0, **opts)
    pred = torch.zeros(1, 32, 32, 8)
    pred[0, 2:5, 2:5, 1:3] = 1  # 18 voxels
    pred[0, 10:20, 10:20, 2:6] = 1  # 400 voxels
    fine = remove({"pred": MetaTensor(pred.clone(), affine=torch.eye(4, dtype=torch.float64))})["pred"]
    assert float(fine.sum()) == 0.0  # 18 and 400 mm3 at 1 mm voxels: both under 500 mm3
    coarse_affine = torch.diag(torch.tensor([1.8, 1.8, 5.0, 1.0], dtype=torch.float64))
    coarse = remove({"pred": MetaTensor(pred.clone(), affine=coarse_affine)})["pred"]
    assert float(coarse.sum()) == 400.0  # 292 mm3 removed, 6480 mm3 kept
    assert float(coarse[0, 10:20, 10:20, 2:6].min()) == 1.0


def test_cpu_profile_trains_lesion_weighted_and_drops_predicted_components_under_500_mm3(dataset):
    opts = {"dataset_dir": str(dataset), "num_workers": 0}
    (loss,) = _parsed(_parser("train", "dicece", "cpu", **opts), "loss")
    assert type(loss).__name__ == "LesionWeightedDiceCELoss"  # cpu.json wins over dicece.json in the docs' order
    for names, key in (
        (("inference", "cpu"), "postprocessing"),
        (("train", "cpu"), "validate#postprocessing"),
        (("train", "cpu", "evaluate"), "validate#postprocessing"),
    ):
        (remove,) = _small_object_removal(names, key, **opts)
        assert remove.converter.min_size == 500.0 and remove.converter.by_measure
        assert remove.converter.connectivity == 3  # 26-connected: a nodule touching a slice diagonally is one object

"""brain_metastasis_ct_classification: inputs, preprocessing, sampling, network, curriculum, metrics, workflows."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_apps.bundles import BUNDLES_DIR, _forget_bundle_scripts, run_bundle
from monai_apps.data.synthetic_head import HEAD_IDS, generate_head_cohort, generate_head_ct
from monai_apps.data.writers import write_dicom_series, write_nifti

BUNDLE = "brain_metastasis_ct_classification"
ROOT = BUNDLES_DIR / BUNDLE
SMALL = {"image_size": 64, "slice_mm": 10.0, "sw_batch_size": 8, "num_workers": 0}


@pytest.fixture
def scripts():
    """The bundle's ``scripts`` package (each bundle has its own; conftest forgets it after every test)."""
    _forget_bundle_scripts()
    sys.path.insert(0, str(ROOT))
    try:
        import scripts as module

        yield module
    finally:
        sys.path.remove(str(ROOT))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """6 + 2 tiny patients (64 x 64 x 3.5 mm, 10 mm slices), half of them positive."""
    return generate_head_cohort(
        tmp_path_factory.mktemp("head") / "brain_mets",
        n_patients=6,
        n_test=2,
        seed=4,
        shape=(64, 64, None),
        spacing=(3.5, 3.5, 10.0),
        progress=False,
    )


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    """Two epochs of training on the tiny cohort (curriculum stage 1, then a custom stage 2 from epoch 1)."""
    out = tmp_path_factory.mktemp("run")
    stages = [{"start_epoch": 0, "lr": {"head": 1e-4}}, {"start_epoch": 1, "lr": {"layer4": 1e-5, "head": 1e-4}}]
    common = {"dataset_dir": str(cohort), "ckpt_dir": str(out / "models"), "output_dir": str(out / "eval"), **SMALL}
    _forget_bundle_scripts()
    run_bundle(BUNDLE, ["train"], max_epochs=2, val_interval=1, curriculum=stages, **common)
    _forget_bundle_scripts()
    return out, common, stages


# ---------------------------------------------------------------- inputs and datalists


def _series(folder: Path, seed: int = 0, **kwargs) -> Path:
    ct = generate_head_ct(seed, shape=(48, 48, None), spacing=(4.5, 4.5, 10.0), n_metastases=0)
    return write_dicom_series(folder, ct.image, ct.affine, **kwargs)


def _mixed_series(folder: Path) -> None:
    _series(folder, 1)
    other = _series(folder.with_name("other"), 2)
    for f in other.iterdir():
        shutil.move(str(f), folder / f"B{f.name}")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: _series(d / "p", modality="MR"), "modality MR is not CT"),
        (lambda d: (d / "p").mkdir(), "empty folder"),
        (lambda d: _mixed_series(d / "p"), "mixes 2 DICOM series"),
        (lambda d: (d / "p").mkdir() or (d / "p" / "notes.txt").write_text("hello"), "no DICOM image files"),
    ],
    ids=["wrong-modality", "empty", "mixed-series", "no-dicom"],
)
def test_bad_series_fail_with_one_line_naming_the_folder(scripts, tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(scripts.inputs.InputError, match=message) as info:
        scripts.inputs.check_dicom_series(tmp_path / "p")
    assert str(tmp_path / "p") in str(info.value) and "\n" not in str(info.value)


def test_truncated_slice_is_named(scripts, tmp_path):
    folder = _series(tmp_path / "p")
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-500])
    with pytest.raises(scripts.inputs.InputError, match="truncated pixel data") as info:
        scripts.inputs.check_dicom_series(folder)
    assert victim.name in str(info.value)


def test_folder_of_patients_skips_nothing_silently(scripts, tmp_path):
    _series(tmp_path / "A")
    _series(tmp_path / "B", 1)
    (tmp_path / "labels.csv").write_text("patient_id,label\nA,0\n")  # a side file: fine
    items = scripts.inputs.inference_datalist(tmp_path)
    assert [i["patient_id"] for i in items] == ["A", "B"]
    assert scripts.inputs.inference_datalist(tmp_path / "A")[0]["patient_id"] == "A"  # one patient folder
    (tmp_path / "C").mkdir()
    with pytest.raises(scripts.inputs.InputError, match=f"{tmp_path / 'C'}: empty folder"):
        scripts.inputs.inference_datalist(tmp_path)
    (tmp_path / "C").rmdir()
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    with pytest.raises(scripts.inputs.InputError, match="scan.png: neither a DICOM series folder nor a NIfTI"):
        scripts.inputs.inference_datalist(tmp_path)
    with pytest.raises(scripts.inputs.InputError, match="no such file or folder"):
        scripts.inputs.inference_datalist(tmp_path / "missing")


@pytest.mark.parametrize(
    "text, message",
    [
        ("patient_id,label\nA,2\n", r"labels.csv:2: label '2' of patient A is not 0/1"),
        ("patient_id,label\nA,1\nA,0\n", "labels.csv:3: patient A is listed twice"),
        ("name,value\nA,1\n", "names no patient column"),
        ("patient_id,label\nZ,1\n", "patient Z of .* has no DICOM folder or NIfTI file"),
        ("", "empty labels CSV"),
    ],
)
def test_bad_labels_csv(scripts, tmp_path, text, message):
    _series(tmp_path / "A")
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(scripts.inputs.InputError, match=message):
        scripts.datalist.patient_datalist(tmp_path, split="training")


def test_split_is_by_patient_stratified_and_reproducible(scripts, cohort):
    train = scripts.datalist.patient_datalist(cohort, split="training", seed=0)
    val = scripts.datalist.patient_datalist(cohort, split="validation", seed=0)
    test = scripts.datalist.patient_datalist(cohort, split="test", seed=0)
    ids = lambda items: {i["patient_id"] for i in items}  # noqa: E731
    assert not ids(train) & ids(val) and ids(train) | ids(val) == {f"HEAD000{i}" for i in range(1, 7)}
    assert {i["label"] for i in val} == {0, 1} or len(val) == 1
    assert ids(test) == {"HEAD0007", "HEAD0008"}
    assert ids(scripts.datalist.patient_datalist(cohort, split="training", seed=0)) == ids(train)
    flexible = cohort.parent / "flexible.csv"
    flexible.write_text("PatientID,Metastasis\nHEAD0001,yes\nHEAD0002,no\n")
    assert scripts.datalist.read_labels(flexible) == {"HEAD0001": 1, "HEAD0002": 0}


# ---------------------------------------------------------------- preprocessing


def test_brain_mask_matches_the_generated_brain(scripts):
    ct = generate_head_ct(9, shape=(128, 128, None), spacing=(1.8, 1.8, 5.0), n_metastases=2)
    mask = scripts.transforms.brain_mask(ct.image.astype(np.float32), ct.spacing)
    truth = np.isin(ct.labels, [HEAD_IDS[n] for n in ("brain", "white_matter", "metastasis", "oedema", "ventricle")])
    top = ct.image.shape[2] - 3  # the vertex slices are partial volume
    dice = 2 * (mask & truth)[..., :top].sum() / (mask[..., :top].sum() + truth[..., :top].sum())
    assert dice > 0.9, f"brain mask Dice {dice:.3f}"
    assert not (mask & np.isin(ct.labels, [HEAD_IDS["scalp"], 0])).sum() > 0.002 * mask.sum(), "scalp or air in mask"
    met = ct.labels == HEAD_IDS["metastasis"]
    assert (mask & met).sum() >= 0.9 * met.sum(), "metastases must stay inside the brain mask"


def test_brain_mask_rejects_a_scan_without_brain(scripts):
    from monai.data import MetaTensor

    air = MetaTensor(torch.full((1, 32, 32, 8), -1000.0), affine=torch.diag(torch.tensor([2.0, 2.0, 5.0, 1.0])))
    air.meta["filename_or_obj"] = "/data/chest.nii.gz"
    with pytest.raises(scripts.inputs.InputError, match="/data/chest.nii.gz: no brain found"):
        scripts.transforms.BrainMaskd("image")({"image": air})


def _preprocess(scripts, path, size=96, slice_mm=5.0):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs" / "inference.json"))
    parser.update({"bundle_root": str(ROOT), "image_size": size, "slice_mm": slice_mm})
    from monai.transforms import Compose

    return Compose(parser.get_parsed_content("preprocessing"))({"image": str(path)})


def test_preprocessing_stacks_good_slices_and_records_their_origin(scripts, tmp_path):
    ct = generate_head_ct(3, shape=(128, 128, None), spacing=(1.8, 1.8, 5.0), n_metastases=1)
    folder = write_dicom_series(tmp_path / "p", ct.image, ct.affine)
    out = _preprocess(scripts, folder)
    image, index = out["image"], out["slice_index"].numpy()
    assert image.ndim == 3 and image.shape[1:] == (96, 96) and "brain" not in out
    assert 10 <= image.shape[0] < ct.image.shape[2], "the quality filter drops the skull base and the vertex"
    assert 0 not in index and ct.image.shape[2] - 1 not in index
    assert np.all(np.diff(index) > 0) and index.max() < ct.image.shape[2]
    brain = image[image != 0]
    assert abs(float(brain.mean())) < 0.05 and abs(float(brain.std()) - 1) < 0.05, "z-score over the brain"
    assert set(ct.metastases[0]["slices"]) <= set(index.tolist()), "the lesion slices are kept"
    voxels = np.c_[np.zeros((len(index), 2)), index, np.ones(len(index))].T
    np.testing.assert_allclose(out["slice_z"].numpy(), (ct.affine @ voxels)[2], atol=0.5)


def test_quality_filter_keeps_asymmetric_poor_slices(scripts):
    stack = scripts.transforms.BrainSliceStackd("image", min_brain_fraction=0.5, min_asymmetry=0.05)
    image = np.zeros((64, 64, 3), np.float32)
    mask = np.zeros((64, 64, 3), bool)
    mask[8:56, 8:56, 0] = True  # full slice
    mask[22:42, 22:42, 1] = True  # small, symmetric: poor
    mask[22:42, 22:42, 2] = True  # small, with a lesion on one side: poor but asymmetric
    image[mask] = 0.4
    image[24:34, 26:32, 2] = 0.9
    keep, fraction, asymmetry = stack.select(image, mask)
    assert keep.tolist() == [0, 2], (fraction, asymmetry)


def test_masked_zscore_and_clahe(scripts):
    img = torch.rand(2, 32, 32) * 5 + 3
    mask = torch.zeros(2, 32, 32)
    mask[:, 4:28, 4:28] = 1
    out = scripts.transforms.MaskedZScored("image", "brain")({"image": img, "brain": mask})["image"]
    assert torch.all(out[mask == 0] == 0)
    assert abs(out[mask > 0].mean()) < 1e-4 and abs(out[mask > 0].std() - 1) < 1e-3
    clahe = scripts.transforms.RandCLAHEd("image", prob=1.0)
    clahe.set_random_state(0)
    x = torch.randn(1, 64, 64)
    y = clahe({"image": x})["image"]
    assert y.shape == x.shape and not torch.allclose(y, x)
    assert y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5, "CLAHE keeps the slice's range"


def test_class_conditional_augmentation(scripts):
    from monai.transforms import Lambdad

    def mark(tag):
        return Lambdad("image", lambda x, t=tag: x + t)

    aug = scripts.transforms.ClassConditionalAugmentd(
        "image", positive=[mark(1.0)], negative=[mark(10.0)], positive_prob=0.7, negative_prob=0.5
    )
    aug.set_random_state(0)
    pos = [float(aug({"image": torch.zeros(1), "label": 1.0})["image"]) for _ in range(2000)]
    neg = [float(aug({"image": torch.zeros(1), "label": 0.0})["image"]) for _ in range(2000)]
    assert set(pos) == {0.0, 1.0} and set(neg) == {0.0, 10.0}, "each class gets only its own chain"
    assert abs(np.mean(np.array(pos) == 1.0) - 0.7) < 0.04 and abs(np.mean(np.array(neg) == 10.0) - 0.5) < 0.04


# ---------------------------------------------------------------- sampling


def test_patient_batches(scripts):
    patients = [
        {"image": torch.rand(n, 8, 8), "label": lab, "patient_id": f"P{i}", "slice_index": torch.arange(n) + 2}
        for i, (n, lab) in enumerate([(3, 1), (5, 0), (2, 1)])
    ]
    ds = scripts.sampling.PatientSliceDataset(patients)
    assert len(ds) == 10 and ds.patient_slices == [[0, 1, 2], [3, 4, 5, 6, 7], [8, 9]]
    sampler = scripts.sampling.PatientBatchSampler(ds.patient_slices, shuffle=True, seed=1, num_replicas=1, rank=0)
    epochs = [list(sampler) for _ in range(4)]
    for epoch in epochs:  # every patient once per epoch, with all its slices
        assert sorted(map(tuple, epoch)) == sorted(map(tuple, ds.patient_slices))
    assert len({tuple(map(tuple, e)) for e in epochs}) > 1, "the patient order is reshuffled each epoch"
    epoch1 = epochs[0]
    batch = scripts.sampling.collate_patient([ds[i] for i in epoch1[0]])
    pid = batch["patient_id"][0]
    n = {"P0": 3, "P1": 5, "P2": 2}[pid]
    assert batch["image"].shape == (1, n, 8, 8) and batch["label"].shape == (1, 1)
    assert batch["slice_index"].tolist() == [list(range(2, 2 + n))]
    shards = [
        list(
            scripts.sampling.PatientBatchSampler(
                ds.patient_slices, True, 1, num_replicas=2, rank=r, even_divisible=True
            )
        )
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 2
    with pytest.raises(ValueError, match="mixes patients"):
        scripts.sampling.collate_patient([ds[0], ds[3]])


def test_several_patients_per_step(scripts):
    patients = [
        {"image": torch.full((n, 4, 4), float(i)), "label": lab, "patient_id": f"P{i}", "slice_index": torch.arange(n)}
        for i, (n, lab) in enumerate([(3, 1), (5, 0), (2, 1)])
    ]
    ds = scripts.sampling.PatientSliceDataset(patients)
    sampler = scripts.sampling.PatientBatchSampler(
        ds.patient_slices, seed=0, num_replicas=1, rank=0, patients_per_batch=2
    )
    steps = list(sampler)
    assert len(sampler) == len(steps) == 2, "3 patients, 2 per step: 2 steps"
    assert sorted(i for s in steps for i in s) == list(range(10)), "every slice once per epoch"
    first = max(steps, key=lambda step: len({ds[i]["patient_id"] for i in step}))  # the step with two patients
    batch = scripts.sampling.collate_patients([ds[i] for i in first])
    ids = batch["patient_id"]
    n = max({"P0": 3, "P1": 5, "P2": 2}[p] for p in ids)
    assert len(ids) == 2 and batch["image"].shape == (2, n, 4, 4) and batch["label"].shape == (2, 1)
    for row, pid in enumerate(ids):  # padding repeats the patient's own last slice: the MAX is unchanged
        assert torch.all(batch["image"][row] == float(pid[1:]))
        assert batch["label"][row, 0] == {"P0": 1.0, "P1": 0.0, "P2": 1.0}[pid]
    one = scripts.sampling.collate_patients([ds[i] for i in ds.patient_slices[1]])
    ref = scripts.sampling.collate_patient([ds[i] for i in ds.patient_slices[1]])
    assert torch.equal(one["image"], ref["image"]) and one["patient_id"] == ref["patient_id"]


# ---------------------------------------------------------------- network, pretrained weights, curriculum


def _torchvision_like_state_dict(net, scripts) -> dict:
    """A ResNet-50 state dict in torchvision's layout: 3-channel conv1, no ``0.`` prefix, a 1000-class fc."""
    state = {}
    generator = torch.Generator().manual_seed(0)
    for key, value in net.state_dict().items():
        if not key.startswith(scripts.network.BACKBONE_PREFIX):
            continue
        name = key[len(scripts.network.BACKBONE_PREFIX) :]
        shape = (64, 3, 7, 7) if name == "conv1.weight" else tuple(value.shape)
        state[name] = torch.randn(shape, generator=generator) if value.is_floating_point() else value.clone()
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    return state


def test_pretrained_loader_maps_a_torchvision_state_dict(scripts, tmp_path):
    net = scripts.network.metastasis_resnet50()
    state = _torchvision_like_state_dict(net, scripts)
    path = tmp_path / "radimagenet_resnet50.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    head_before = net[4].weight.clone()
    report = scripts.network.load_pretrained_weights(net, path)
    torch.testing.assert_close(net[0].conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(net[0].layer3[2].conv2.weight, state["layer3.2.conv2.weight"])
    torch.testing.assert_close(net[0].bn1.running_var, state["bn1.running_var"])
    assert report.conv1_reduced and sorted(report.unexpected) == ["module.fc.bias", "module.fc.weight"]
    assert report.missing == ["1.bias", "1.weight", "4.bias", "4.weight"], "only the new head stays untrained"
    torch.testing.assert_close(net[4].weight, head_before)
    mean_net = scripts.network.metastasis_resnet50()
    scripts.network.load_pretrained_weights(mean_net, path, conv1_reduce="mean")
    torch.testing.assert_close(mean_net[0].conv1.weight, state["conv1.weight"].mean(1, keepdim=True))
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(scripts.inputs.InputError, match="no ResNet-50 backbone tensor matched"):
        scripts.network.load_pretrained_weights(net, tmp_path / "other.pt")
    with pytest.raises(scripts.inputs.InputError, match="pretrained weights file not found"):
        scripts.network.load_pretrained_weights(net, tmp_path / "missing.pt")


def test_config_network_is_the_documented_resnet50(scripts):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs" / "train.json"))
    net = parser.get_parsed_content("network_def")
    ref = scripts.network.metastasis_resnet50()
    assert [(k, v.shape) for k, v in net.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    assert sum(p.numel() for p in net[0].parameters()) == 23_501_760, "ResNet-50 backbone, 1 input channel"
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)] == [512, 1]
    assert isinstance(net[3], torch.nn.Dropout) and net[3].p == 0.4
    net.eval()
    assert net(torch.rand(3, 1, 64, 64)).shape == (3, 1)


def test_curriculum_stages_freeze_and_set_learning_rates(scripts):
    from ignite.engine import Engine

    net = scripts.network.metastasis_resnet50()
    optimizer = torch.optim.AdamW(scripts.network.param_groups(net), lr=0.0)
    stages = [
        {"start_epoch": 0, "lr": {"head": 5e-5}},
        {"start_epoch": 5, "lr": {"layer4": 1e-5, "head": 5e-5}},
        {"start_epoch": 12, "lr": {"layer3": 5e-6, "layer4": 1e-5, "head": 5e-5}},
    ]
    curriculum = scripts.engine.CurriculumHandler(net, optimizer, stages)
    engine = Engine(lambda e, b: None)
    expected = {
        1: {"head": 5e-5},
        5: {"head": 5e-5},
        6: {"layer4": 1e-5, "head": 5e-5},
        12: {"layer4": 1e-5, "head": 5e-5},
        13: {"layer3": 5e-6, "layer4": 1e-5, "head": 5e-5},
        51: {"layer3": 5e-6, "layer4": 1e-5, "head": 5e-5},
    }
    for epoch, lrs in expected.items():  # ignite epochs count from 1, the curriculum's from 0
        engine.state.epoch = epoch
        curriculum(engine)
        got = {g["name"]: g["lr"] for g in optimizer.param_groups}
        assert {k: v for k, v in got.items() if v > 0} == lrs, (epoch, got)
        assert all(p.requires_grad == (got[g["name"]] > 0) for g in optimizer.param_groups for p in g["params"])
    net.train()
    net(torch.rand(2, 1, 32, 32))  # the pre-hook puts the frozen batch norms back in eval mode
    assert not net[0].bn1.training and not net[0].layer2[0].bn1.training and net[0].layer3[0].bn1.training
    with pytest.raises(ValueError, match="unknown groups"):
        scripts.engine.CurriculumHandler(net, optimizer, [{"start_epoch": 0, "lr": {"layer9": 1.0}}])


def test_gradient_clipping_and_max_pooling(scripts):
    from types import SimpleNamespace

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    inferer = scripts.engine.PatientSliceInferer(reduce="max")
    x = torch.rand(1, 5, 4, 4)
    per_slice = net(x.reshape(5, 1, 4, 4)).reshape(-1)
    torch.testing.assert_close(inferer(x, net), per_slice.max().reshape(1, 1))
    with torch.no_grad():
        chunked = scripts.engine.PatientSliceInferer(reduce="none", slice_batch_size=2)(x, net)
    torch.testing.assert_close(chunked, per_slice.detach()[None])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    (1000 * inferer(x, net).sum()).backward()
    engine = SimpleNamespace(optimizer=optimizer, amp=False, scaler=None, state=SimpleNamespace(output={}))
    scripts.engine.GradientClipHandler(max_norm=1.0)(engine)
    norm = torch.sqrt(sum((p.grad**2).sum() for p in net.parameters()))
    assert engine.state.output["grad_norm"] > 1.0 and norm <= 1.0 + 1e-5


# ---------------------------------------------------------------- metrics


def test_best_threshold_and_scores(scripts):
    metrics = scripts.metrics
    p = [0.9, 0.8, 0.35, 0.3, 0.1]
    y = [1, 1, 1, 0, 0]
    threshold, f1 = metrics.best_f1_threshold(p, y)
    assert f1 == 1.0 and 0.3 < threshold < 0.35
    logits = np.log(np.array(p) / (1 - np.array(p)))
    scores = metrics.patient_scores(logits, y, threshold=0.5)
    assert scores["sensitivity"] == pytest.approx(2 / 3) and scores["specificity"] == 1.0
    assert scores["f1"] == pytest.approx(0.8) and scores["auc"] == 1.0 and scores["n"] == 5
    best = metrics.patient_scores(logits, y)
    assert best["f1"] == 1.0 and best["threshold"] == pytest.approx(threshold)
    metric = metrics.PatientMetric("specificity", threshold=0.5)
    metric.update(([torch.tensor([2.0]), torch.tensor([-1.0, 0.5])], [torch.tensor([0.0]), torch.tensor([0.0])]))
    assert metric.compute() == 0.0, "patient logits are the max over slices: both negatives are called positive"
    with pytest.raises(ValueError, match="unknown stat"):
        metrics.PatientMetric("dice")


# ---------------------------------------------------------------- workflows


def test_training_checkpoints_carry_weights_optimizer_metrics_threshold_history(trained):
    out, _, stages = trained
    best = torch.load(out / "models" / "model.pt", weights_only=True, map_location="cpu")
    last = torch.load(out / "models" / "checkpoint_epoch=2.pt", weights_only=True, map_location="cpu")
    for ckpt in (best, last):
        assert set(ckpt) == {"model", "optimizer", "trainer", "record"}
        record = ckpt["record"]
        assert 0.0 < record["threshold"] < 1.0 and "val_f1" in record["metrics"]
        assert [h["epoch"] for h in record["history"]] == list(range(1, len(record["history"]) + 1))
    trainer = last["trainer"]
    assert trainer["iteration"] == 2 * trainer["epoch_length"] and len(last["record"]["history"]) == 2
    assert "train_loss" in last["record"]["history"][-1]
    assert [g["lr"] for g in last["optimizer"]["param_groups"] if g["name"] == "layer4"] == [1e-5], "stage 2 active"


@pytest.mark.parametrize("start", ["checkpoint_epoch=2.pt", "model.pt"])
def test_training_resumes_from_any_checkpoint(trained, tmp_path, start):
    out, common, stages = trained
    ckpt_dir = tmp_path / "models"
    shutil.copytree(out / "models", ckpt_dir)
    source = torch.load(ckpt_dir / start, weights_only=True, map_location="cpu")
    _forget_bundle_scripts()
    workflow = run_bundle(
        BUNDLE,
        ["train"],
        **{**common, "ckpt_dir": str(ckpt_dir), "output_dir": str(tmp_path / "eval")},
        max_epochs=3,
        val_interval=1,
        curriculum=stages,
        resume_from=str(ckpt_dir / start),
    )
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 3
    assert trainer.state.iteration == source["trainer"]["iteration"] + trainer.state.epoch_length
    after = torch.load(ckpt_dir / "checkpoint_epoch=3.pt", weights_only=True, map_location="cpu")
    history = after["record"]["history"]
    assert [h["epoch"] for h in history][-1] == 3 and len(history) == len(source["record"]["history"]) + 1


def test_evaluate_writes_metrics_predictions_and_gradcam(trained, cohort):
    out, common, _ = trained
    _forget_bundle_scripts()
    run_bundle(BUNDLE, ["train", "evaluate"], **common)
    metrics = dict(line.split(",") for line in (out / "eval" / "metrics.csv").read_text().split())
    assert {"f1", "sensitivity", "specificity", "threshold", "auc", "patients"} <= set(metrics)
    assert float(metrics["patients"]) == 2
    record = torch.load(out / "models" / "model.pt", weights_only=True)["record"]
    assert float(metrics["threshold"]) == pytest.approx(record["threshold"]), "evaluation uses the stored threshold"
    with open(out / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["patient_id"] for r in rows] == ["HEAD0007", "HEAD0008"] and all(r["label"] in "01" for r in rows)
    pngs = sorted((out / "eval" / "slices").glob("*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 1000 for p in pngs)


def test_inference_csv_for_a_folder_and_for_one_patient(trained, cohort, tmp_path):
    out, _, _ = trained
    for source, expected in ((cohort, 8), (cohort / "HEAD0003", 1)):
        _forget_bundle_scripts()
        run_bundle(
            BUNDLE,
            ["inference"],
            input_path=str(source),
            ckpt_path=str(out / "models" / "model.pt"),
            output_dir=str(tmp_path / source.name),
            **SMALL,
        )
        with open(tmp_path / source.name / "predictions.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == expected
        for r in rows:
            assert 0.0 <= float(r["probability"]) <= 1.0 and r["prediction"] == str(
                int(float(r["probability"]) >= float(r["threshold"]))
            )
            n_series = len(list((cohort / r["patient_id"]).glob("*.dcm")))
            assert 0 <= int(r["suspicious_slice"]) < n_series
            assert int(r["suspicious_instance_number"]) == int(r["suspicious_slice"]) + 1


def test_inference_on_bad_input_writes_nothing(trained, tmp_path):
    out, _, _ = trained
    bad = tmp_path / "patients"
    _series(bad / "P1")
    _series(bad / "P2", modality="MR")
    _forget_bundle_scripts()
    with pytest.raises(Exception) as info:
        run_bundle(
            BUNDLE,
            ["inference"],
            input_path=str(bad),
            ckpt_path=str(out / "models" / "model.pt"),
            output_dir=str(tmp_path / "out"),
            **SMALL,
        )
    root = info.value
    while root.__cause__ is not None:
        root = root.__cause__
    assert type(root).__name__ == "InputError" and str(root) == f"{bad / 'P2'}: DICOM modality MR is not CT"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_suspicious_slice_points_at_the_lesion(scripts, tmp_path):
    """With a network that scores a slice by its area of lesion-bright pixels, the CSV must name the lesion's slice."""
    ct = generate_head_ct(17, shape=(96, 96, None), spacing=(2.4, 2.4, 5.0), n_metastases=0, noise_sd=2.0)
    image = ct.image.copy()
    image[ct.labels == HEAD_IDS["calcification"]] = 30  # no bright look-alike
    k = image.shape[2] // 2 + 2
    brain = ct.mask("brain")[:, :, k]
    i, j = np.argwhere(brain)[len(np.argwhere(brain)) // 3]
    image[i - 2 : i + 3, j - 2 : j + 3, k] = 95  # a hyperdense lesion in one slice, off the midline
    folder = write_dicom_series(tmp_path / "patients" / "P", image, ct.affine)

    class Brightest(torch.nn.Module):
        def forward(self, x):  # pixels at the top of the brain window (>= 80 HU): the falx and sinus stay below
            return (x >= x.max() - 1e-4).float().sum(dim=(1, 2, 3))[:, None]

    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs" / "inference.json"))
    parser.update({"bundle_root": str(ROOT), "image_size": 96, "input_path": str(folder.parent), "num_workers": 0})
    parser["network_def"] = "$torch.nn.Identity()"
    loader = parser.get_parsed_content("dataloader")
    batch = next(iter(loader))
    logits = scripts.engine.PatientSliceInferer(reduce="none")(batch["image"], Brightest())
    item = {"pred": logits[0], "slice_index": batch["slice_index"][0], "slice_z": batch["slice_z"][0]}
    result = scripts.engine.PatientPredictiond("pred", threshold=0.5)(item)
    assert result["suspicious_slice"] == k
    numbers = scripts.writers.dicom_instance_numbers(folder)
    assert numbers[result["suspicious_slice"]] == k + 1
    assert result["suspicious_z_mm"] == pytest.approx((ct.affine @ [0, 0, k, 1])[2], abs=0.5)


def test_pretrained_path_through_the_training_config(scripts, cohort, tmp_path):
    net = scripts.network.metastasis_resnet50()
    state = _torchvision_like_state_dict(net, scripts)
    torch.save(state, tmp_path / "resnet50.pt")
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / "configs" / "train.json"))
    parser.update({"bundle_root": str(ROOT), "pretrained_path": str(tmp_path / "resnet50.pt"), "device": "cpu"})
    network = parser.get_parsed_content("network")
    torch.testing.assert_close(network[0].layer4[0].conv3.weight, state["layer4.0.conv3.weight"])


@pytest.mark.real
def test_real_head_ct_through_preprocessing_and_inference(scripts, real_dir, trained, tmp_path):
    """The real InVesalius head CT (NIfTI) gives a brain mask of adult size, kept slices and a valid prediction."""
    import nibabel as nib

    source = real_dir / "invesalius" / "Cranium_ct.nii.gz"
    n_slices = nib.load(str(source)).shape[2]
    out = _preprocess(scripts, source, size=64)
    index = out["slice_index"].numpy()
    assert 12 <= len(index) <= n_slices and index.min() >= 0 and index.max() < n_slices
    assert index.max() > 0.75 * n_slices, "the upper brain slices are kept"
    hu = np.asarray(nib.load(str(source)).dataobj, dtype=np.float32)
    mask = scripts.transforms.brain_mask(hu, (0.957, 0.957, 1.5))
    volume_ml = mask.sum() * 0.957 * 0.957 * 1.5 / 1000
    assert 1000 < volume_ml < 1800, f"brain mask {volume_ml:.0f} mL"
    model, _, _ = trained
    _forget_bundle_scripts()
    run_bundle(
        BUNDLE,
        ["inference"],
        input_path=str(source),
        ckpt_path=str(model / "models" / "model.pt"),
        output_dir=str(tmp_path / "real"),
        **SMALL,
    )
    with open(tmp_path / "real" / "predictions.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["patient_id"] == "Cranium_ct" and 0.0 <= float(row["probability"]) <= 1.0
    assert 0 <= int(row["suspicious_slice"]) < n_slices and row["suspicious_instance_number"] == ""


def test_nifti_patients_are_accepted(scripts, tmp_path):
    ct = generate_head_ct(2, shape=(48, 48, None), spacing=(4.5, 4.5, 10.0))
    write_nifti(tmp_path / "P7.nii.gz", ct.image, ct.affine)
    items = scripts.inputs.inference_datalist(tmp_path)
    assert items == [{"image": str(tmp_path / "P7.nii.gz"), "source": str(tmp_path / "P7.nii.gz"), "patient_id": "P7"}]
    (tmp_path / "P7.nii.gz").write_bytes((tmp_path / "P7.nii.gz").read_bytes()[:-100])
    with pytest.raises(scripts.inputs.InputError, match="P7.nii.gz: truncated"):
        scripts.inputs.inference_datalist(tmp_path)

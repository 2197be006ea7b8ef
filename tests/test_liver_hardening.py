"""Hardening of the liver bundle: bad input, faults and fuzzing of the loading entry points."""

from __future__ import annotations

import importlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smoke_cases.liver_tumor_ct_segmentation import make_liver_msd

from monai_apps.bundles import BUNDLES_DIR, config_files, run_bundle
from monai_apps.data.synthetic_abdomen import generate_abdominal_ct
from monai_apps.data.writers import write_dicom_series, write_nifti
from monai_apps.export import build_network

BUNDLE = "liver_tumor_ct_segmentation"
ROOT = BUNDLES_DIR / BUNDLE
CPU = ["inference", "unet", "cpu"]
SMOKE = str(REPO_ROOT / "configs" / "smoke.json")


@pytest.fixture()
def scripts():
    sys.path.insert(0, str(ROOT))
    try:
        yield importlib.import_module("scripts")
    finally:
        sys.path.remove(str(ROOT))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "model.pt"
    torch.save(build_network(BUNDLE, CPU).state_dict(), path)
    return path


def _small_ct(seed=1, shape=(64, 64, 16), spacing=(5.0, 5.0, 15.0)):
    return generate_abdominal_ct(seed=seed, shape=shape, spacing=spacing)


def _infer(source, weights, out, **overrides):
    return run_bundle(
        BUNDLE, CPU, input_path=str(source), ckpt_path=str(weights), output_dir=str(out), num_workers=0, **overrides
    )


# --- DICOM series --------------------------------------------------------------------------------------------------
def test_missing_slices_are_refused(scripts, tmp_path):
    ct = _small_ct()
    write_dicom_series(tmp_path / "s", ct.image, ct.affine)
    (tmp_path / "s" / "IM0008.dcm").unlink()
    with pytest.raises(
        scripts.inputs.InputError,
        match=r"missing slices: a gap of 30.00 mm between IM0007.dcm and "
        r"IM0009.dcm \(slice spacing 15.00 mm\)",
    ):
        scripts.inputs.check_dicom_series(tmp_path / "s")


def test_duplicate_slices_are_refused(scripts, tmp_path):
    ct = _small_ct()
    write_dicom_series(tmp_path / "s", ct.image, ct.affine)
    import pydicom

    ds = pydicom.dcmread(tmp_path / "s" / "IM0003.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "s" / "IM0003b.dcm")
    with pytest.raises(scripts.inputs.InputError, match="two slices at the same position"):
        scripts.inputs.check_dicom_series(tmp_path / "s")


def test_truncated_dicom_pixel_data_is_refused(scripts, tmp_path):
    ct = _small_ct()
    write_dicom_series(tmp_path / "s", ct.image, ct.affine)
    victim = tmp_path / "s" / "IM0005.dcm"
    victim.write_bytes(victim.read_bytes()[:-500])
    with pytest.raises(scripts.inputs.InputError, match=r"IM0005.dcm: truncated pixel data"):
        scripts.inputs.check_dicom_series(tmp_path / "s")


def test_unordered_slice_files_give_the_right_geometry(weights, tmp_path):
    """File names in reverse slice order: the series is still read by position, output in the input grid."""
    from monai.transforms import LoadImage

    ct = _small_ct()
    write_dicom_series(tmp_path / "ordered", ct.image, ct.affine)
    (tmp_path / "series").mkdir()
    files = sorted((tmp_path / "ordered").iterdir())
    for i, f in enumerate(reversed(files)):
        shutil.copy(f, tmp_path / "series" / f"slice_{i:03d}.dcm")
    _infer(tmp_path / "series", weights, tmp_path / "out")
    ref = LoadImage(image_only=True)(str(tmp_path / "series"))
    np.testing.assert_array_equal(np.asarray(ref), ct.image)  # ITK sorted the slices by position
    seg = nib.load(tmp_path / "out" / "series_seg.nii.gz")
    assert seg.shape == ct.image.shape
    np.testing.assert_allclose(seg.affine, np.asarray(ref.affine), atol=1e-3)


# --- labels --------------------------------------------------------------------------------------------------------
def test_unexpected_label_values_are_refused(scripts, tmp_path):
    data = make_liver_msd(tmp_path, n_cases=2, n_test=0)
    label = data / "labelsTr" / "liver_0.nii.gz"
    img = nib.load(label)
    values = np.asarray(img.dataobj).copy()
    values[0, 0, 0] = 7
    write_nifti(label, values, img.affine)
    with pytest.raises(scripts.inputs.InputError, match=r"liver_0.nii.gz: unexpected label values 7 \(expected 0..2\)"):
        scripts.datalist.check_pair(str(data / "imagesTr" / "liver_0.nii.gz"), str(label), num_classes=3)


# --- volumes -------------------------------------------------------------------------------------------------------
def _oblique(affine: np.ndarray, angle: float = 0.35) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    return rotation @ affine


@pytest.mark.parametrize(
    "name, make",
    [
        ("lps storage", lambda ct: (ct.image, ct.affine)),
        ("ras storage", lambda ct: (ct.image[::-1, ::-1], np.diag([-1.0, -1.0, 1.0, 1.0]) @ ct.affine)),
        ("oblique", lambda ct: (ct.image, _oblique(ct.affine))),
        ("anisotropic 1x1x8 mm", lambda ct: (ct.image, np.diag([1.0, 1.0, 8.0, 1.0]))),
        ("smaller than a patch", lambda ct: (ct.image[20:40, 20:40, 4:8], ct.affine)),
        ("uint16 offset storage", lambda ct: ((ct.image.astype(np.int32) + 1024).astype(np.uint16), ct.affine)),
    ],
)
def test_inputs_come_back_in_their_own_geometry(name, make, weights, tmp_path):
    image, affine = make(_small_ct())
    folder = tmp_path / "in put ü"  # spaces and non-ASCII in the path
    source = write_nifti(folder / "cas é.nii.gz", np.ascontiguousarray(image), affine)
    _infer(source, weights, tmp_path / "out ü")
    seg = nib.load(tmp_path / "out ü" / "cas é_seg.nii.gz")
    assert seg.shape == image.shape, name
    np.testing.assert_allclose(seg.affine, affine, atol=1e-3, err_msg=name)
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}


def test_nan_and_infinite_voxels_are_treated_as_air(weights, tmp_path):
    ct = _small_ct()
    image = ct.image.astype(np.float32)
    image[:5] = np.nan
    image[-3:, :, :2] = np.inf
    image[:, :4] = -np.inf
    source = write_nifti(tmp_path / "nan.nii.gz", image, ct.affine)
    _infer(source, weights, tmp_path / "out")
    seg = np.asarray(nib.load(tmp_path / "out" / "nan_seg.nii.gz").dataobj)
    assert seg.shape == image.shape and set(np.unique(seg).tolist()) <= {0, 1, 2}


def test_4d_volume_is_refused(scripts, tmp_path):
    path = write_nifti(tmp_path / "4d.nii.gz", np.zeros((16, 16, 8, 3), np.int16), np.eye(4))
    with pytest.raises(scripts.inputs.InputError, match=r"4d.nii.gz: expected a 3D volume, got shape \(16, 16, 8, 3\)"):
        scripts.inputs.inference_datalist(path)


def test_a_volume_that_would_not_fit_in_memory_is_refused(scripts, tmp_path):
    ct = _small_ct()
    path = write_nifti(tmp_path / "ct.nii.gz", ct.image, ct.affine)
    with pytest.raises(scripts.inputs.InputError, match=r"ct.nii.gz: needs about .* GiB of memory, .* GiB available"):
        scripts.inputs.inference_datalist(path, bytes_per_voxel=1e9)
    assert scripts.inputs.inference_datalist(path, bytes_per_voxel=16) == [{"image": str(path)}]


# --- faults --------------------------------------------------------------------------------------------------------
def test_interrupted_inference_leaves_no_partial_output_and_a_rerun_finishes(weights, tmp_path, monkeypatch):
    data = make_liver_msd(tmp_path / "data", n_cases=0, n_test=3, seed=4)
    out = tmp_path / "out"
    real_save = nib.save
    calls = {"n": 0}

    def crash_on_second(img, filename):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(filename).write_bytes(b"half a file")
            raise KeyboardInterrupt("power cut")
        return real_save(img, filename)

    monkeypatch.setattr(nib, "save", crash_on_second)
    with pytest.raises(BaseException, match="power cut"):
        _infer(data / "imagesTs", weights, out)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["liver_0_seg.nii.gz"], "partial output left behind"
    first = (out / "liver_0_seg.nii.gz").stat().st_mtime_ns
    _infer(data / "imagesTs", weights, out)
    assert sorted(p.name for p in out.iterdir()) == [f"liver_{i}_seg.nii.gz" for i in range(3)]
    assert (out / "liver_0_seg.nii.gz").stat().st_mtime_ns == first, "a finished case was redone"
    _infer(data / "imagesTs", weights, out)  # everything done: nothing to do, no error


KILL_CONFIGS = ["train", "unet", "cpu", SMOKE]
KILL_SETTINGS = {
    "pixdim": [6.0, 6.0, 6.0],
    "patch_size": [32, 32, 32],
    "batch_size": 2,
    "num_samples": 2,
    "max_epochs": 4,
    "val_interval": 1,
    "early_stop_patience": 100,
    "num_workers": 0,
}


# Runs the bundle in a child process that SIGKILLs itself after the first iteration of epoch ``kill_epoch``: a hard
# kill at a known point of training, whatever the load on the machine (a timed kill from outside was not).
KILL_SCRIPT = """
import json, os, signal, sys
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai_apps.bundles import bundle_imports

root, files, overrides, kill_epoch = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
workflow = ConfigWorkflow(config_file=files, meta_file=root + "/configs/metadata.json", bundle_root=root, **overrides)
with bundle_imports(root):
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    in_epoch = Events.ITERATION_COMPLETED(event_filter=lambda engine, _: engine.state.epoch == kill_epoch)
    trainer.add_event_handler(in_epoch, lambda _: os.kill(os.getpid(), signal.SIGKILL))
    workflow.run()
"""


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_and_ends_like_an_uninterrupted_run(tmp_path):
    data = make_liver_msd(tmp_path / "data", n_cases=5, n_test=0, seed=8)
    settings_ = {**KILL_SETTINGS, "dataset_dir": str(data)}

    reference = run_bundle(
        BUNDLE, KILL_CONFIGS, ckpt_dir=str(tmp_path / "ref"), output_dir=str(tmp_path / "ref"), **settings_
    )
    ref_metric = reference.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]

    ckpt = tmp_path / "killed"
    overrides = {**settings_, "ckpt_dir": str(ckpt), "output_dir": str(ckpt)}
    args = [str(ROOT), json.dumps(config_files(ROOT, KILL_CONFIGS)), json.dumps(overrides), "3"]
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert sorted(p.name for p in ckpt.glob("checkpoint_epoch=*.pt")) == ["checkpoint_epoch=2.pt"]

    resumed = run_bundle(BUNDLE, KILL_CONFIGS, resume=True, ckpt_dir=str(ckpt), output_dir=str(ckpt), **settings_)
    trainer = resumed.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 4
    metric = resumed.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    assert abs(metric - ref_metric) < 0.15, (metric, ref_metric)


def test_resume_skips_an_incomplete_checkpoint_and_saving_is_atomic(scripts, tmp_path):
    from ignite.engine import Engine

    folder = tmp_path / "ckpt"
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    saver = scripts.checkpoints.AtomicCheckpointSaver(
        save_dir=str(folder),
        save_dict={"network": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)},
        save_interval=1,
        epoch_level=True,
        n_saved=None,
    )
    saver.attach(engine)
    engine.run([0], max_epochs=2)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    assert all(h.save_handler._atomic for h in [saver._interval_checkpoint])
    # a kill during a save of epoch 3 leaves a truncated file: resume must pick epoch 2, with a warning
    (folder / "checkpoint_epoch=3.pt").write_bytes((folder / "checkpoint_epoch=2.pt").read_bytes()[:100])
    assert scripts.checkpoints.latest_checkpoint(folder) == str(folder / "checkpoint_epoch=2.pt")
    loaded = torch.load(scripts.checkpoints.latest_checkpoint(folder), weights_only=True)
    assert torch.equal(loaded["network"]["weight"], net.weight.detach())
    assert scripts.checkpoints.latest_checkpoint(tmp_path / "missing") is None


# --- fuzzing -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    ct = generate_abdominal_ct(seed=3, shape=(24, 24, 6), spacing=(12.0, 12.0, 40.0))
    nifti = write_nifti(root / "ct.nii.gz", ct.image, ct.affine).read_bytes()
    write_dicom_series(root / "series", ct.image, ct.affine)
    dicom = sorted((root / "series").iterdir())[0].read_bytes()
    return nifti, dicom


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile in conftest.py
@given(data=st.data())
def test_fuzz_loading_entry_points_fail_only_with_input_errors(scripts, valid_files, tmp_path_factory, data):
    nifti, dicom = valid_files
    kind = data.draw(st.sampled_from(["nifti", "dicom"]))
    blob = bytearray(nifti if kind == "nifti" else dicom)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), max_size=8))
    for pos, value in flips:
        blob[pos] = value
    blob = bytes(blob[:cut]) if data.draw(st.booleans()) else bytes(blob)
    folder = tmp_path_factory.mktemp("case")
    if kind == "nifti":
        target = folder / "ct.nii.gz"
        target.write_bytes(blob)
        entry = target
    else:
        (folder / "series").mkdir()
        (folder / "series" / "IM0001.dcm").write_bytes(blob)
        entry = folder / "series"
    try:
        items = scripts.inputs.inference_datalist(entry)
    except scripts.inputs.InputError as err:
        assert "\n" not in str(err) and str(entry.name) in str(err)
    else:
        assert items == [{"image": str(entry)}]

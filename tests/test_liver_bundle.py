"""The liver + tumour bundle beyond the shared checks: real scans, resume, devices, DDP, atomic outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cases import SMOKE_CASES
from conftest import REPO_ROOT
from smoke_cases.liver_tumor_ct_segmentation import make_liver_msd

from monai_apps.bundles import BUNDLES_DIR, config_files, run_bundle

BUNDLE = "liver_tumor_ct_segmentation"
ROOT = BUNDLES_DIR / BUNDLE
CPU_CONFIGS = ["inference", "unet", "cpu"]
SMOKE = str(REPO_ROOT / "configs" / "smoke.json")


@pytest.fixture(scope="module")
def cpu_checkpoint(tmp_path_factory) -> Path:
    """Weights of the CPU-profile network (untrained: these tests check geometry and plumbing, not accuracy)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(ROOT, CPU_CONFIGS))
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(net.state_dict(), path)
    return path


def _infer(source, ckpt, out_dir, **overrides):
    return run_bundle(
        BUNDLE,
        CPU_CONFIGS,
        input_path=str(source),
        ckpt_path=str(ckpt),
        output_dir=str(out_dir),
        num_workers=0,
        **overrides,
    )


def test_inference_on_real_nifti_keeps_geometry(real_dir, cpu_checkpoint, tmp_path):
    source = real_dir / "totalsegmentator" / "reference_files" / "example_ct.nii.gz"
    _infer(source, cpu_checkpoint, tmp_path)
    out = tmp_path / "example_ct_seg.nii.gz"
    ref, seg = nib.load(source), nib.load(out)
    assert seg.shape == ref.shape == (122, 101, 112)
    np.testing.assert_allclose(seg.affine, ref.affine, atol=1e-4)
    assert seg.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2}


def test_inference_on_real_jpeg2000_dicom_series_keeps_geometry(real_dir, cpu_checkpoint, tmp_path):
    from monai.transforms import LoadImage

    source = real_dir / "totalsegmentator" / "reference_files" / "example_ct_dicom"
    _infer(source, cpu_checkpoint, tmp_path)
    outputs = list(tmp_path.glob("*_seg.nii.gz"))
    assert len(outputs) == 1, outputs
    ref = LoadImage(image_only=True)(str(source))  # the series as ITK reads it (RAS affine)
    seg = nib.load(outputs[0])
    assert seg.shape == tuple(ref.shape) == (512, 512, 20)
    np.testing.assert_allclose(seg.affine, np.asarray(ref.affine), atol=1e-3)
    # the series is JPEG2000: decoding must give real HU, not zeros
    assert float(ref.min()) <= -1000 and float(ref.max()) > 1000


def test_inference_on_a_folder_writes_one_file_per_case(cpu_checkpoint, tmp_path):
    data = make_liver_msd(tmp_path / "data", n_cases=0, n_test=2, seed=9)
    _infer(data / "imagesTs", cpu_checkpoint, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["liver_0_seg.nii.gz", "liver_1_seg.nii.gz"]


def _tag_as_cuda(storage):
    return "cuda:0"


def test_gpu_saved_checkpoint_loads_on_cpu(cpu_checkpoint, tmp_path):
    """A checkpoint whose tensors are tagged 'cuda:0' (as one saved on a GPU) loads through map_location."""
    from torch import serialization

    state = torch.load(cpu_checkpoint, weights_only=True)
    registry = serialization._package_registry
    entry = (-1, _tag_as_cuda, lambda obj, location: None)
    registry.insert(0, entry)
    try:
        torch.save(state, tmp_path / "gpu.pt")
    finally:
        registry.remove(entry)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    data = make_liver_msd(tmp_path / "data", n_cases=0, n_test=1, seed=3)
    _infer(data / "imagesTs", tmp_path / "gpu.pt", tmp_path / "out")
    assert (tmp_path / "out" / "liver_0_seg.nii.gz").is_file()


class Payload:
    """Stands for arbitrary pickled code inside a checkpoint."""

    def __reduce__(self):
        return (print, ("this would have run on load",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    """Weights-only loading: a checkpoint that carries an arbitrary object does not load."""
    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(tmp_path / "evil.pt", weights_only=True)
    data = make_liver_msd(tmp_path / "data", n_cases=0, n_test=1, seed=3)
    with pytest.raises(Exception) as info:
        _infer(data / "imagesTs", tmp_path / "evil.pt", tmp_path / "out")
    assert "Weights only load failed" in "".join(str(e) for e in _chain(info.value))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _chain(err):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def test_training_resumes_from_last_checkpoint(tmp_path):
    case = SMOKE_CASES[BUNDLE]
    data = make_liver_msd(tmp_path / "data")
    common = {
        "dataset_dir": str(data),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
        **case.overrides,
    }
    run_bundle(BUNDLE, ["train", str(SMOKE)], **common)
    first = torch.load(tmp_path / "models" / "checkpoint_epoch=1.pt", weights_only=True)
    assert first["trainer"]["iteration"] == first["trainer"]["epoch_length"], "not saved after exactly one epoch"
    workflow = run_bundle(BUNDLE, ["train", str(SMOKE)], resume=True, max_epochs=2, **common)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2
    assert trainer.state.iteration == 2 * first["trainer"]["iteration"], "resume restarted the iteration count"
    assert (tmp_path / "models" / "checkpoint_epoch=2.pt").is_file()
    sys.path.insert(0, str(ROOT))
    try:
        from scripts.checkpoints import latest_checkpoint
    finally:
        sys.path.remove(str(ROOT))
    assert latest_checkpoint(tmp_path / "models").endswith("checkpoint_epoch=2.pt")


@pytest.mark.slow
def test_multi_gpu_config_runs_ddp_on_cpu_with_gloo(tmp_path):
    """multi_gpu_train.json under torchrun: 2 processes, gloo backend, DistributedSampler, on the CPU."""
    case = SMOKE_CASES[BUNDLE]
    data = make_liver_msd(tmp_path / "data", n_cases=8)  # 6 training + 2 validation cases: one of each per rank
    configs = config_files(ROOT, ["train", "multi_gpu_train"]) + [SMOKE]
    overrides = []
    for key, value in {
        **case.overrides,
        "dataset_dir": str(data),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
        "log_every_iteration": True,
    }.items():
        overrides += [f"--{key}", str(value).replace(" ", "")]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(configs).replace(" ", ""),
        "--bundle_root",
        str(ROOT),
        "--meta_file",
        str(ROOT / "configs" / "metadata.json"),
        "--logging_file",
        str(ROOT / "configs" / "logging.conf"),
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "gloo" in log or "Engine run finished" in log
    assert (tmp_path / "models" / "model.pt").is_file()
    # 6 training cases over 2 ranks: each rank gets 3, i.e. 2 iterations of batch 2; only rank 0 logs
    assert log.count("Epoch: 1/1, Iter: 1/2") == 1 and log.count("Epoch: 1/1, Iter: 2/2") == 1, log[-3000:]


@pytest.mark.parametrize(
    "target_diag, permute",
    [((0.7, 0.7, 1.5), False), ((-0.8, -0.8, 2.5), False), ((-0.9, 0.6, -1.7), True)],
)
def test_nearest_to_grid_matches_dense_resampling(target_diag, permute):
    """The separable label resampler agrees with MONAI's dense SpatialResample on axis-aligned grids."""
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    sys.path.insert(0, str(ROOT))
    try:
        from scripts.resample import nearest_to_grid
    finally:
        sys.path.remove(str(ROOT))
    rng = np.random.default_rng(0)
    src_affine = np.diag([3.0, 3.0, 3.0, 1.0])
    src_affine[:3, 3] = [-40.3, -35.7, -20.2]
    label = MetaTensor(torch.as_tensor(rng.integers(0, 3, (1, 20, 18, 12)), dtype=torch.float32), affine=src_affine)
    dst = np.diag([*target_diag, 1.0])
    if permute:
        dst[:3, :3] = dst[:3, [1, 0, 2]]
    shape = (70, 64, 30)
    src_center = src_affine[:3, :3] @ ((np.array(label.shape[1:]) - 1) / 2) + src_affine[:3, 3]
    dst[:3, 3] = src_center - dst[:3, :3] @ ((np.array(shape) - 1) / 2) + 0.137  # off the voxel ties
    ours = nearest_to_grid(label, dst, shape)
    dense = SpatialResample(mode="nearest", padding_mode="zeros")(
        label, dst_affine=torch.as_tensor(dst), spatial_size=shape
    )
    assert ours.shape == (1, *shape)
    np.testing.assert_allclose(np.asarray(ours.affine), dst)
    agreement = (np.asarray(ours) == np.asarray(dense)).mean()
    assert agreement > 0.995, agreement
    assert np.asarray(ours).any()


def test_nearest_to_grid_falls_back_for_oblique_grids():
    from monai.data import MetaTensor

    sys.path.insert(0, str(ROOT))
    try:
        from scripts.resample import nearest_to_grid
    finally:
        sys.path.remove(str(ROOT))
    label = MetaTensor(torch.ones(1, 8, 8, 8), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = np.array([[c, -s, 0, 2], [s, c, 0, 2], [0, 0, 1, 2], [0, 0, 0, 1]])
    out = nearest_to_grid(label, oblique, (20, 20, 20))
    assert out.shape == (1, 20, 20, 20) and 0 < float(out.sum()) < 20**3

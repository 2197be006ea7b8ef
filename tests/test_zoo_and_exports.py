"""Sharing and exports: model-zoo zips installed with MONAI's own client, self-contained bundles, ONNX/TorchScript."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cases import SMOKE_CASES
from conftest import REPO_ROOT

from monai_apps.bundles import BUNDLES_DIR, list_bundles
from monai_apps.export import build_network, export_network

LIVER = "liver_tumor_ct_segmentation"
CPU_VARIANTS = ["unet", "cpu"]


@pytest.fixture()
def isolated_env(tmp_path) -> dict:
    """Environment for a subprocess in which importing ``monai_apps`` fails: a bundle must not need it."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "monai_apps.py").write_text("raise ImportError('a bundle imported monai_apps')\n")
    return {**os.environ, "PYTHONPATH": str(shadow), "OMP_NUM_THREADS": "2"}


def _run_bundle_cli(
    bundle_root: Path, configs: list[str], cwd: Path, env: dict, **overrides
) -> subprocess.CompletedProcess:
    files = [str(bundle_root / "configs" / f"{c}.json") for c in configs]
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        json.dumps(files),
        "--bundle_root",
        str(bundle_root),
    ]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def liver_cpu_weights(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    net = build_network(LIVER, ["inference", *CPU_VARIANTS])
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(net.state_dict(), path)
    return path


def test_zoo_export_installs_offline_with_monai_and_runs(tmp_path, liver_cpu_weights, isolated_env, real_dir):
    from monai.bundle import download_large_files, load

    from monai_apps.zoo import export_bundle

    result = export_bundle(LIVER, tmp_path / "dist", ckpt=liver_cpu_weights, variants=CPU_VARIANTS)
    zip_path = Path(result["zip"])
    assert zip_path.name == f"{LIVER}_v0.1.0.zip"
    names = set(zipfile.ZipFile(zip_path).namelist())
    for member in (
        "configs/metadata.json",
        "configs/inference.json",
        "models/model.pt",
        "models/model.ts",
        "large_files.yml",
        "docs/README.md",
        "LICENSE",
        "scripts/__init__.py",
    ):
        assert f"{LIVER}/{member}" in names, member
    assert f"{LIVER}/configs/unet.json" not in names, "variants are merged into the exported configs"
    index = json.loads((tmp_path / "dist" / "model_info.json").read_text())
    entry = index[f"{LIVER}_v0.1.0"]
    assert entry["checksum"] == hashlib.sha1(zip_path.read_bytes()).hexdigest()
    assert entry["source"] == zip_path.as_uri()

    installed = tmp_path / "installed"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "download",
        "--name",
        LIVER,
        "--version",
        "0.1.0",
        "--url",
        zip_path.as_uri(),
        "--bundle_dir",
        str(installed),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=isolated_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    copy = installed / LIVER
    assert (copy / "models" / "model.pt").is_file()

    # large_files.yml: every weight with its SHA-256, downloadable with MONAI's client into a bare copy
    bare = tmp_path / "bare"
    shutil.copytree(copy, bare, ignore=shutil.ignore_patterns("models"))
    download_large_files(bundle_path=str(bare))
    for weight, digest in result["sha256"].items():
        assert hashlib.sha256((bare / "models" / weight).read_bytes()).hexdigest() == digest

    # monai.bundle.load builds the network from the installed configs and loads the weights
    net = load(name=LIVER, bundle_dir=str(installed), source="monaihosting", workflow_type="inference")
    expected = torch.load(liver_cpu_weights, weights_only=True)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, expected[key])

    # and monai.bundle run works from the installed copy, from another folder, without this repository's package
    source = real_dir / "totalsegmentator" / "reference_files" / "example_ct.nii.gz"
    proc = _run_bundle_cli(
        copy, ["inference"], tmp_path, isolated_env, input_path=str(source), output_dir=str(tmp_path / "out")
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    seg = nib.load(tmp_path / "out" / "example_ct_seg.nii.gz")
    assert seg.shape == nib.load(source).shape


def test_zoo_export_without_weights_is_a_clear_error(tmp_path):
    from monai_apps.zoo import export_bundle

    with pytest.raises(FileNotFoundError, match="no trained weights to export"):
        export_bundle(LIVER, tmp_path, ckpt=tmp_path / "missing.pt")


@pytest.mark.parametrize("bundle", list_bundles())
def test_bundle_runs_alone_from_a_copy(bundle, tmp_path, isolated_env):
    """Copy the bundle folder alone somewhere else and run its inference there, without ``monai_apps``."""
    case = SMOKE_CASES[bundle]
    data = case.make_data(tmp_path / "data")
    source = case.inference_input(data)
    copy = tmp_path / "elsewhere" / bundle
    shutil.copytree(BUNDLES_DIR / bundle, copy, ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
    inference_overrides = {k: v for k, v in case.overrides.items() if k in _inference_keys(copy)}
    net = build_network(copy, ["inference"], **inference_overrides)  # the smoke case may shrink the network
    (copy / "models").mkdir()
    torch.save(net.state_dict(), copy / "models" / "model.pt")
    proc = _run_bundle_cli(
        copy,
        ["inference"],
        tmp_path / "elsewhere",
        isolated_env,
        input_path=source,
        output_dir=str(tmp_path / "out"),
        num_workers=0,
        **inference_overrides,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert list((tmp_path / "out").glob(case.output_glob)), f"{bundle}: nothing written"


def _inference_keys(root: Path) -> set[str]:
    return set(json.loads((root / "configs" / "inference.json").read_text()))


@pytest.mark.parametrize("bundle", list_bundles())
def test_torchscript_and_onnx_exports_match_pytorch(bundle, tmp_path):
    torch.manual_seed(0)
    torch.save(build_network(bundle, ["inference"]).state_dict(), tmp_path / "initial.pt")
    report = export_network(bundle, tmp_path, ckpt=tmp_path / "initial.pt")
    assert Path(report["torchscript"]["path"]).is_file() and Path(report["onnx"]["path"]).is_file()
    assert report["torchscript"]["max_abs_diff"] < 1e-4, report
    assert report["onnx"]["max_abs_diff"] < 1e-3, report


def test_onnx_runtime_profile_gives_the_pytorch_segmentation(tmp_path, liver_cpu_weights):
    from smoke_cases.liver_tumor_ct_segmentation import make_liver_msd

    from monai_apps.bundles import run_bundle

    data = make_liver_msd(tmp_path / "data", n_cases=0, n_test=1, seed=12)
    source = str(data / "imagesTs" / "liver_0.nii.gz")
    export = export_network(
        LIVER, tmp_path / "export", configs=["inference", *CPU_VARIANTS], ckpt=liver_cpu_weights, formats=("onnx",)
    )
    common = {"input_path": source, "num_workers": 0}
    run_bundle(
        LIVER,
        ["inference", *CPU_VARIANTS],
        ckpt_path=str(liver_cpu_weights),
        output_dir=str(tmp_path / "pt"),
        cpu_bf16=False,
        **common,
    )
    run_bundle(
        LIVER,
        ["inference", *CPU_VARIANTS, str(REPO_ROOT / "configs" / "onnx_runtime.json")],
        onnx_path=export["onnx"]["path"],
        output_dir=str(tmp_path / "ort"),
        **common,
    )
    a = np.asarray(nib.load(tmp_path / "pt" / "liver_0_seg.nii.gz").dataobj)
    b = np.asarray(nib.load(tmp_path / "ort" / "liver_0_seg.nii.gz").dataobj)
    assert a.shape == b.shape
    assert (a == b).mean() > 0.999


def test_bench_model_reports_throughput_flops_and_memory():
    from monai_apps.bench_suite import bench_model, matmul_gflops, network_profiles

    assert ["inference", "unet", "cpu"] in network_profiles(LIVER)
    row = bench_model(LIVER, ["inference", "unet", "cpu"], "eager", batch=1, repeats=1)
    assert "error" not in row, row
    assert row["input_shape"] == [1, 1, 96, 96, 64]
    assert row["items_per_s"] > 0 and row["peak_rss_mb"] > 100
    assert row["flops_per_item"] > 1e9  # a 3D UNet on a 96x96x64 patch: several GFLOP
    assert matmul_gflops(n=512, repeats=2) > 1.0


@pytest.mark.parametrize("bundle", [b for b in list_bundles() if b != LIVER])
def test_every_bundle_exports_to_the_zoo_and_installs_with_monai(bundle, tmp_path):
    """Each bundle's zip installs with ``monai.bundle.download`` (offline); ``monai.bundle.load`` gives its weights."""
    from monai.bundle import download, load

    from monai_apps.zoo import export_bundle

    torch.manual_seed(0)
    net = build_network(bundle, ["inference"])
    torch.save(net.state_dict(), tmp_path / "model.pt")
    result = export_bundle(bundle, tmp_path / "dist", ckpt=tmp_path / "model.pt")
    version = json.loads((BUNDLES_DIR / bundle / "configs" / "metadata.json").read_text())["version"]
    zip_path = Path(result["zip"])
    assert zip_path.name == f"{bundle}_v{version}.zip"
    installed = tmp_path / "installed"
    download(name=bundle, version=version, url=zip_path.as_uri(), bundle_dir=str(installed))
    for member in ("models/model.pt", "models/model.ts", "large_files.yml", "configs/inference.json", "LICENSE"):
        assert (installed / bundle / member).is_file(), member
    loaded = load(name=bundle, bundle_dir=str(installed), source="monaihosting", workflow_type="inference")
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    with open(installed / bundle / "models" / "model.pt", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == result["sha256"]["model.pt"]

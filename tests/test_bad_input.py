"""Bad input gets a one-line error naming the file and the problem, and leaves no half-written output."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from smoke_cases.liver_tumor_ct_segmentation import make_liver_msd

from monai_apps.bundles import BUNDLES_DIR, run_bundle
from monai_apps.data.synthetic_abdomen import generate_abdominal_ct
from monai_apps.data.writers import write_dicom_series, write_nifti

BUNDLE = "liver_tumor_ct_segmentation"


@pytest.fixture()
def scripts():
    """The liver bundle's own ``scripts`` package, imported from the bundle folder."""
    sys.path.insert(0, str(BUNDLES_DIR / BUNDLE))
    try:
        yield importlib.import_module("scripts")
    finally:
        sys.path.remove(str(BUNDLES_DIR / BUNDLE))


@pytest.fixture()
def volume(tmp_path):
    ct = generate_abdominal_ct(seed=1, shape=(48, 48, 12), spacing=(8.0, 8.0, 25.0))
    path = write_nifti(tmp_path / "case.nii.gz", ct.image, ct.affine)
    return path, ct


def _one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message, f"multi-line error: {message!r}"
    return message


def test_truncated_nifti_gz(scripts, volume):
    path, _ = volume
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(scripts.inputs.InputError) as info:
        scripts.inputs.check_nifti(path)
    message = _one_line(info.value)
    assert str(path) in message and "truncated" in message


def test_not_a_nifti(scripts, tmp_path):
    bad = tmp_path / "noise.nii.gz"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(scripts.inputs.InputError, match="noise.nii.gz: not a readable NIfTI") as info:
        scripts.inputs.check_nifti(bad)
    _one_line(info.value)


def test_2d_image_given_to_3d_bundle(scripts, tmp_path):
    path = write_nifti(tmp_path / "slice.nii.gz", np.zeros((32, 32), np.int16), np.eye(4))
    with pytest.raises(scripts.inputs.InputError, match=r"slice.nii.gz: expected a 3D volume, got shape \(32, 32\)"):
        scripts.inputs.check_nifti(path)


def test_image_label_shape_mismatch(scripts, tmp_path):
    data = make_liver_msd(tmp_path, n_cases=2, n_test=0)
    label = data / "labelsTr" / "liver_1.nii.gz"
    img = nib.load(label)
    write_nifti(label, np.asarray(img.dataobj)[:, :, :-2], img.affine)
    with pytest.raises(scripts.inputs.InputError) as info:
        scripts.datalist.check_pair(str(data / "imagesTr" / "liver_1.nii.gz"), str(label))
    message = _one_line(info.value)
    assert str(label) in message and "does not match image shape" in message


def test_image_label_affine_mismatch(scripts, tmp_path):
    data = make_liver_msd(tmp_path, n_cases=2, n_test=0)
    label = data / "labelsTr" / "liver_0.nii.gz"
    img = nib.load(label)
    shifted = img.affine.copy()
    shifted[0, 3] += 5.0
    write_nifti(label, np.asarray(img.dataobj), shifted)
    with pytest.raises(scripts.inputs.InputError, match="label affine does not match"):
        scripts.datalist.check_pair(str(data / "imagesTr" / "liver_0.nii.gz"), str(label))


def test_empty_and_missing_folders(scripts, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(scripts.inputs.InputError, match="empty: folder holds no NIfTI files"):
        scripts.inputs.find_inputs(tmp_path / "empty")
    with pytest.raises(scripts.inputs.InputError, match="nowhere: no such file or folder"):
        scripts.inputs.find_inputs(tmp_path / "nowhere")
    with pytest.raises(scripts.inputs.InputError, match="dataset folder not found"):
        scripts.datalist.decathlon_datalist(tmp_path / "nowhere")
    with pytest.raises(scripts.inputs.InputError, match="no labelled cases"):
        scripts.datalist.decathlon_datalist(tmp_path / "empty")


def test_dicom_folder_checks(scripts, tmp_path):
    ct = generate_abdominal_ct(seed=1, shape=(32, 32, 4), spacing=(10.0, 10.0, 60.0))
    write_dicom_series(tmp_path / "mr", ct.image, ct.affine, modality="MR")
    with pytest.raises(scripts.inputs.InputError, match="mr: DICOM modality MR is not CT"):
        scripts.inputs.inference_datalist(tmp_path / "mr")
    write_dicom_series(tmp_path / "a", ct.image, ct.affine)
    write_dicom_series(tmp_path / "b", ct.image, ct.affine)
    (tmp_path / "mixed").mkdir()
    for series in ("a", "b"):
        for f in (tmp_path / series).iterdir():
            shutil.copy(f, tmp_path / "mixed" / f"{series}_{f.name}")
    with pytest.raises(scripts.inputs.InputError, match="mixed: holds 2 DICOM series"):
        scripts.inputs.inference_datalist(tmp_path / "mixed")
    assert scripts.inputs.inference_datalist(tmp_path / "a") == [{"image": str(tmp_path / "a")}]


def test_bundle_inference_on_truncated_file_writes_nothing(volume, tmp_path):
    path, _ = volume
    path.write_bytes(path.read_bytes()[:-100])
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        run_bundle(
            BUNDLE,
            ["inference", "unet", "cpu"],
            input_path=str(path),
            output_dir=str(out),
            ckpt_path=str(tmp_path / "unused.pt"),
        )
    root = info.value
    while root.__cause__ is not None:
        root = root.__cause__
    assert type(root).__name__ == "InputError"
    expected = 48 * 48 * 12 * 2 + 352
    assert _one_line(root) == f"{path}: truncated or corrupt gzip stream (expected {expected} bytes of NIfTI data)"
    assert not out.exists() or not any(out.iterdir())


def test_atomic_writer_leaves_nothing_on_failure(scripts, tmp_path, monkeypatch):
    import torch
    from monai.data import MetaTensor

    def make_writer():
        writer = scripts.writers.AtomicNibabelWriter()
        writer.set_data_array(MetaTensor(torch.zeros(1, 8, 8, 8)), channel_dim=0)
        writer.set_metadata({"affine": np.eye(4), "original_affine": np.eye(4)})
        return writer

    target = tmp_path / "out" / "case_seg.nii.gz"

    def broken_save(img, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        make_writer().write(str(target))
    assert not target.exists() and not list(target.parent.iterdir())
    monkeypatch.undo()
    make_writer().write(str(target))
    assert nib.load(target).shape == (8, 8, 8)
    assert [p.name for p in target.parent.iterdir()] == ["case_seg.nii.gz"]


def test_cli_prints_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "monai_apps", "generate", "--out", str(tmp_path / "x"), "--layout", "bogus"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "error: unknown layout 'bogus'; expected one of msd, totalsegmentator, dicom"


def test_monai_bundle_run_on_a_truncated_file_exits_non_zero_with_the_error_last(volume, tmp_path):
    """From the command line: exit status 1, the traceback ends in the one-line InputError, no output."""
    path, _ = volume
    path.write_bytes(path.read_bytes()[:-100])
    root = BUNDLES_DIR / BUNDLE
    configs = [str(root / "configs" / f"{n}.json") for n in ("inference", "unet", "cpu")]
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(configs).replace(" ", ""),
            "--bundle_root",
            str(root),
        ]
        + ["--input_path", str(path), "--output_dir", str(out), "--ckpt_path", str(tmp_path / "unused.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    expected = f"{path}: truncated or corrupt gzip stream (expected {48 * 48 * 12 * 2 + 352} bytes of NIfTI data)"
    assert f"scripts.inputs.InputError: {expected}" in proc.stderr.splitlines(), proc.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())

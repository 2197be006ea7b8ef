"""Helpers for the deploy-app tests: bundle copies with test weights, generated series, SEG-vs-NIfTI geometry."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monai_apps.bundles import BUNDLES_DIR


def bundle_copy(bundle: str, dest: Path, configs: Sequence[str], seed: int = 0, sharpen: float = 1.0) -> Path:
    """Copy a bundle's configs and scripts to ``dest`` and write untrained weights to ``models/model.pt``.

    The weights are an initialised network of the merged ``configs`` (geometry tests need no trained model).
    ``sharpen`` scales the last layer's weights and zeroes its bias, so that the untrained output depends on the
    image rather than on the bias (some initialisations predict one class everywhere).
    """
    import torch
    from monai.bundle import ConfigParser

    from monai_apps.deploy.bundle_model import bundle_scripts

    src = BUNDLES_DIR / bundle
    root = dest / bundle
    root.mkdir(parents=True)
    for name in ("configs", "scripts", "docs"):
        if (src / name).is_dir():
            shutil.copytree(src / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "models").mkdir()
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / f"{c}.json") for c in configs])
    parser["bundle_root"] = str(root)
    with bundle_scripts(root):
        torch.manual_seed(seed)
        net = parser.get_parsed_content("network_def")
        state = net.state_dict()
        if sharpen != 1.0:
            last_weight = [k for k, v in state.items() if k.endswith("weight") and v.ndim >= 2][-1]
            state[last_weight] = state[last_weight] * sharpen
            bias = last_weight[: -len("weight")] + "bias"
            if bias in state:
                state[bias] = torch.zeros_like(state[bias])
        torch.save(state, root / "models" / "model.pt")
    return root


def export_torchscript(root: Path, configs: Sequence[str], out: Path) -> Path:
    """``monai.bundle ckpt_export`` of a bundle copy's ``models/model.pt`` with ``configs`` embedded."""
    from monai.bundle import ckpt_export

    from monai_apps.deploy.bundle_model import bundle_scripts

    with bundle_scripts(root):
        ckpt_export(
            net_id="network_def",
            filepath=str(out),
            ckpt_file=str(root / "models" / "model.pt"),
            meta_file=str(root / "configs" / "metadata.json"),
            config_file=[str(root / "configs" / f"{c}.json") for c in configs],
            bundle_root=str(root),
        )
    return out


def source_instances(series_dir: Path) -> dict[str, tuple[np.ndarray, object]]:
    """SOP Instance UID (from the file meta) -> (Image Position (Patient), dataset) of every file in a series."""
    import pydicom

    out = {}
    for f in sorted(series_dir.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        uid = str(ds.SOPInstanceUID or ds.file_meta.MediaStorageSOPInstanceUID)
        out[uid] = (np.array([float(v) for v in ds.ImagePositionPatient]), ds)
    return out


def seg_label_frames(seg_file: Path, uids: Sequence[str], n_segments: int) -> np.ndarray:
    """Label map ``(n, rows, cols)`` of a binary DICOM SEG for the given source instances (0 where no frame)."""
    import highdicom as hd

    seg = hd.seg.segread(str(seg_file))
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(uids),
        segment_numbers=list(range(1, n_segments + 1)),
        assert_missing_frames_are_empty=True,
    )
    labels = np.zeros(pixels.shape[:3], dtype=np.uint8)
    for s in range(n_segments):
        labels[pixels[..., s] > 0] = s + 1
    return labels


def nifti_slices_for_instances(nifti_file: Path, positions: Sequence[np.ndarray]) -> np.ndarray:
    """The slices ``(n, rows, cols)`` of a NIfTI label map (ITK-read DICOM geometry) at the instances' positions.

    Each instance's Image Position (Patient) (LPS) is mapped through the inverse NIfTI affine (RAS); it must land
    on voxel ``(0, 0, k)``. NIfTI axis 0 runs along DICOM columns and axis 1 along rows, so the slice is
    ``data[:, :, k].T``.
    """
    import nibabel as nib

    img = nib.load(str(nifti_file))
    data = np.asarray(img.dataobj)
    inv = np.linalg.inv(img.affine)
    out = []
    for ipp in positions:
        ijk = inv @ np.array([-ipp[0], -ipp[1], ipp[2], 1.0])
        assert np.allclose(ijk[:2], 0, atol=1e-2), f"instance at {ipp} is not a slice corner of the NIfTI ({ijk})"
        k = int(round(ijk[2]))
        assert abs(ijk[2] - k) < 1e-2 and 0 <= k < data.shape[2], ijk
        out.append(data[:, :, k].T)
    return np.stack(out)


def write_series(folder: Path, image: np.ndarray, affine: np.ndarray, **kwargs) -> Path:
    from monai_apps.data.writers import write_dicom_series

    return write_dicom_series(folder, image, affine, **kwargs)

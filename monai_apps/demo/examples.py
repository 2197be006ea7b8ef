"""Generated examples for every demo tab, made with the project's generators on first use and cached.

The cache folder is ``data/demo_cache`` in the repository (git-ignored) unless ``MONAI_APPS_DEMO_CACHE`` names
another. Every file is written atomically, so an interrupted first use leaves no half-written example.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

from monai_apps.bundles import REPO_ROOT
from monai_apps.data.writers import atomic_path, write_dicom_series, write_nifti

__all__ = [
    "abdomen_ct",
    "abdomen_dicom_zip",
    "cache_dir",
    "chest_xray",
    "head_ct_zip",
    "liver_centre_world",
]

_LOCK = threading.Lock()
#: the generated abdomen: 160 x 160 x 40 voxels of 2.4 x 2.4 x 6 mm (the whole abdomen, seconds on a CPU)
ABDOMEN = {"seed": 2024, "shape": (160, 160, 40), "spacing": (2.4, 2.4, 6.0), "n_tumours": 2}
HEAD = {"seed": 7, "shape": (128, 128, None), "spacing": (1.8, 1.8, 5.0), "n_metastases": 2}


def cache_dir() -> Path:
    """The example cache (created)."""
    path = Path(os.environ.get("MONAI_APPS_DEMO_CACHE", REPO_ROOT / "data" / "demo_cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _abdomen():
    from monai_apps.data.synthetic_abdomen import generate_abdominal_ct

    return generate_abdominal_ct(**ABDOMEN)


def abdomen_ct() -> Path:
    """A generated portal-venous abdominal CT with two liver tumours (NIfTI)."""
    path = cache_dir() / "abdomen_ct.nii.gz"
    with _LOCK:
        if not path.is_file():
            ct = _abdomen()
            write_nifti(path, ct.image, ct.affine)
    return path


def liver_centre_world() -> tuple[float, float, float]:
    """A point well inside the liver of :func:`abdomen_ct`, in RAS millimetres (the organ-patch example click)."""
    from scipy.ndimage import distance_transform_edt

    path = cache_dir() / "abdomen_liver_click.npy"
    with _LOCK:
        if not path.is_file():
            ct = _abdomen()
            liver = ct.mask("liver")
            voxel = np.unravel_index(int(np.argmax(distance_transform_edt(liver))), liver.shape)
            world = ct.affine @ np.array([*voxel, 1.0])
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, world[:3])
    return tuple(float(v) for v in np.load(path))


def _zip_folder(folder: Path, path: Path) -> Path:
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.iterdir()):
                zf.write(f, arcname=f"{folder.name}/{f.name}")
    return path


def abdomen_dicom_zip() -> Path:
    """The generated abdomen as a zipped DICOM CT series."""
    path = cache_dir() / "abdomen_ct_dicom.zip"
    with _LOCK:
        if not path.is_file():
            ct = _abdomen()
            with tempfile.TemporaryDirectory() as tmp:
                series = write_dicom_series(Path(tmp) / "ABDOMEN", ct.image, ct.affine, patient_id="DEMO_ABDOMEN")
                _zip_folder(series, path)
    return path


def head_ct_zip() -> Path:
    """A generated non-contrast head CT with two brain metastases, as a zipped DICOM series."""
    from monai_apps.data.synthetic_head import generate_head_ct

    path = cache_dir() / "head_ct_dicom.zip"
    with _LOCK:
        if not path.is_file():
            ct = generate_head_ct(**HEAD)
            with tempfile.TemporaryDirectory() as tmp:
                series = write_dicom_series(
                    Path(tmp) / "HEAD", ct.image, ct.affine, patient_id="DEMO_HEAD", series_description="Head CT"
                )
                _zip_folder(series, path)
    return path


def chest_xray() -> Path:
    """A generated PA chest radiograph with right lower-lobe consolidation (DICOM CR)."""
    from monai_apps.data.synthetic_cxr import generate_cxr, write_cxr_dicom

    path = cache_dir() / "chest_xray.dcm"
    with _LOCK:
        if not path.is_file():
            write_cxr_dicom(path, generate_cxr(seed=11, pneumonia=True, size=512), patient_id="DEMO_CXR")
    return path


def copy_for_run(path: Path, workdir: Path) -> Path:
    """A private copy of a cached example, so that a run never touches the cache."""
    target = workdir / f"example_{path.name}"
    shutil.copyfile(path, target)
    return target

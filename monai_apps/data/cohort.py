"""Generate cohorts of synthetic abdominal CT in the layouts users already have.

* ``msd``: a Medical Segmentation Decathlon Task03_Liver folder (``imagesTr``, ``labelsTr``, ``dataset.json``;
  held-out cases in ``imagesTs`` with labels in ``labelsTs``).
* ``totalsegmentator``: ``Subject_001/ct.nii.gz`` and ``Subject_001/segmentations/<organ>.nii.gz``.
* ``dicom``: one DICOM CT series per case in ``<case>/`` and its liver/tumour label in ``labels/<case>.nii.gz``.

Case ``i`` is drawn from seed ``seed * 100003 + i``, so a cohort is reproducible and its cases are independent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from .synthetic_abdomen import SyntheticCT, generate_abdominal_ct
from .writers import (
    write_dicom_series,
    write_json,
    write_msd_case,
    write_msd_dataset_json,
    write_nifti,
    write_totalsegmentator_subject,
)

__all__ = ["LAYOUTS", "case_seed", "generate_cohort"]

LAYOUTS = ("msd", "totalsegmentator", "dicom")


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a cohort drawn with ``seed``."""
    return int(seed) * 100003 + int(index)


def _draw(args: tuple) -> SyntheticCT:
    seed, shape, spacing, phase, n_tumours = args
    return generate_abdominal_ct(seed, shape=shape, spacing=spacing, phase=phase, n_tumours=n_tumours)


def _write_case(layout: str, out: Path, case_id: str, ct: SyntheticCT, test: bool) -> dict:
    if layout == "msd":
        write_msd_case(out, case_id, ct.image, ct.msd_label(), ct.affine, test=test)
        return {}
    if layout == "totalsegmentator":
        masks = {name: ct.mask(name) for name in ct.present_structures()}
        write_totalsegmentator_subject(out / case_id, ct.image, ct.affine, masks)
        return {"subject": case_id, "structures": sorted(masks)}
    if layout == "dicom":
        write_nifti(out / "labels" / f"{case_id}.nii.gz", ct.msd_label(), ct.affine)
        write_dicom_series(out / case_id, ct.image, ct.affine, patient_id=case_id.upper())
        return {"image": f"./{case_id}", "label": f"./labels/{case_id}.nii.gz"}
    raise ValueError(f"unknown layout {layout!r}")


def generate_cohort(
    out_dir: str | os.PathLike,
    n_cases: int = 8,
    n_test: int = 0,
    seed: int = 0,
    layout: str = "msd",
    shape: Sequence[int | None] | None = None,
    spacing: Sequence[float] | None = None,
    phase: str = "portal_venous",
    n_tumours: int | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Generate ``n_cases`` (+ ``n_test`` held-out) synthetic abdominal CTs into ``out_dir``.

    Args:
        out_dir: destination folder (created).
        n_cases: training cases (``imagesTr`` in the Decathlon layout).
        n_test: held-out cases (``imagesTs``/``labelsTs``; in the other layouts listed in ``cohort.json``).
        seed: cohort seed.
        layout: one of ``msd``, ``totalsegmentator``, ``dicom``.
        shape: voxels per axis (``None`` entries are drawn per case; default 512 x 512 x 50-220).
        spacing: voxel size in mm (default drawn per case: 0.6-0.9 mm in-plane, 1.5-5 mm slices).
        phase: ``portal_venous`` or ``non_contrast``.
        n_tumours: liver tumours per case (default 0-3 at random).
        workers: processes drawing volumes in parallel.
        progress: show a progress bar.

    Returns:
        ``out_dir``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if n_cases < 0 or n_test < 0 or n_cases + n_test == 0:
        raise ValueError(f"need at least one case, got n_cases={n_cases}, n_test={n_test}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = n_cases + n_test
    jobs = [(case_seed(seed, i), shape, spacing, phase, n_tumours) for i in range(total)]
    ids = [
        f"liver_{i}" if layout == "msd" else f"Subject_{i + 1:03d}" if layout == "totalsegmentator" else f"case_{i:03d}"
        for i in range(total)
    ]
    manifest = []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    drawn = pool.map(_draw, jobs) if pool else map(_draw, jobs)
    try:
        for i, ct in enumerate(tqdm(drawn, total=total, desc=f"generate {layout}", disable=not progress)):
            case_id = ids[i]
            split = "training" if i < n_cases else "test"
            entry = {
                "id": case_id,
                "seed": jobs[i][0],
                "split": split,
                "shape": list(ct.image.shape),
                "spacing": [round(s, 4) for s in ct.spacing],
                "phase": ct.phase,
                "tumours": ct.tumours,
            }
            entry.update(_write_case(layout, out, case_id, ct, test=split == "test"))
            manifest.append(entry)
    finally:
        if pool:
            pool.shutdown()
    if layout == "msd":
        write_msd_dataset_json(out, ids[:n_cases], ids[n_cases:])
    write_json(
        out / "cohort.json",
        {"generator": "monai_apps.data.synthetic_abdomen", "seed": seed, "layout": layout, "cases": manifest},
    )
    return out

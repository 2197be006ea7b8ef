"""Generate cohorts of synthetic abdominal CT, chest CT or cardiac MRI in the layouts users already have.

Anatomies (``anatomy=``):

* ``abdomen`` (:mod:`~monai_apps.data.synthetic_abdomen`): liver and liver tumours, Decathlon Task03_Liver ids
  ``liver_0``, labels 0 background / 1 liver / 2 cancer.
* ``chest`` (:mod:`~monai_apps.data.synthetic_chest`): lung tumours, Decathlon Task06_Lung ids ``lung_001``,
  labels 0 background / 1 cancer.
* ``cardiac`` (:mod:`~monai_apps.data.synthetic_cardiac`): bSSFP MRI, Decathlon Task02_Heart ids ``la_001``,
  modality ``MRI``, labels 0 background / 1 left atrium.

Layouts (``layout=``):

* ``msd``: a Medical Segmentation Decathlon task folder (``imagesTr``, ``labelsTr``, ``dataset.json``;
  held-out cases in ``imagesTs`` with labels in ``labelsTs``).
* ``totalsegmentator``: ``Subject_001/ct.nii.gz`` (``mri.nii.gz`` for MRI) and
  ``Subject_001/segmentations/<structure>.nii.gz`` (chest CT adds ``lung_nodules.nii.gz``, the name of
  TotalSegmentator's lung-nodule task).
* ``dicom``: one DICOM series per case in ``<case>/`` (CT Image Storage, or MR Image Storage for MRI) and its
  Decathlon label in ``labels/<case>.nii.gz``.

Case ``i`` is drawn from seed ``seed * 100003 + i``, so a cohort is reproducible and its cases are independent.
``add=True`` draws more cases into an existing folder under the next free ids (``lung_121`` after 120 cases), from
the seed given, and merges ``dataset.json`` and ``cohort.json``: a larger training set beside the same held-out cases.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from .synthetic_abdomen import SyntheticCT, generate_abdominal_ct
from .synthetic_cardiac import SyntheticCardiacMR, generate_cardiac_mri
from .synthetic_chest import SyntheticChestCT, generate_chest_ct
from .writers import (
    write_dicom_series,
    write_json,
    write_msd_case,
    write_msd_dataset_json,
    write_nifti,
    write_totalsegmentator_subject,
)

__all__ = ["ANATOMIES", "LAYOUTS", "case_seed", "generate_cohort"]

LAYOUTS = ("msd", "totalsegmentator", "dicom")
ANATOMIES = ("abdomen", "chest", "cardiac")
#: Decathlon ``dataset.json`` fields and case-id prefix of the chest and cardiac cohorts.
_MSD_TASKS = {
    "chest": {
        "prefix": "lung",
        "name": "Lung",
        "description": "Synthetic chest CT with lung tumour labels",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "cancer"},
    },
    "cardiac": {
        "prefix": "la",
        "name": "LeftAtrium",
        "description": "Synthetic bSSFP cardiac MRI with left atrium labels",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "left atrium"},
    },
}
_GENERATORS = {
    "abdomen": "monai_apps.data.synthetic_abdomen",
    "chest": "monai_apps.data.synthetic_chest",
    "cardiac": "monai_apps.data.synthetic_cardiac",
}


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` of a cohort drawn with ``seed``."""
    return int(seed) * 100003 + int(index)


def _draw(args: tuple) -> SyntheticCT | SyntheticChestCT | SyntheticCardiacMR:
    seed, shape, spacing, phase, n_tumours, *rest = args
    anatomy = rest[0] if rest else "abdomen"
    if anatomy == "chest":
        return generate_chest_ct(seed, shape=shape, spacing=spacing, n_tumours=n_tumours, phase=phase)
    if anatomy == "cardiac":
        return generate_cardiac_mri(seed, shape=shape, spacing=spacing)
    return generate_abdominal_ct(seed, shape=shape, spacing=spacing, phase=phase, n_tumours=n_tumours)


def _write_case(
    layout: str, out: Path, case_id: str, ct: SyntheticCT | SyntheticChestCT | SyntheticCardiacMR, test: bool
) -> dict:
    is_mr = isinstance(ct, SyntheticCardiacMR)
    if layout == "msd":
        write_msd_case(out, case_id, ct.image, ct.msd_label(), ct.affine, test=test)
        return {}
    if layout == "totalsegmentator":
        masks = {name: ct.mask(name) for name in ct.present_structures()}
        if isinstance(ct, SyntheticChestCT):
            masks["lung_nodules"] = ct.msd_label()
        if is_mr:
            write_totalsegmentator_subject(out / case_id, ct.image, ct.affine, masks, image_name="mri.nii.gz")
        else:
            write_totalsegmentator_subject(out / case_id, ct.image, ct.affine, masks)
        return {"subject": case_id, "structures": sorted(masks)}
    if layout == "dicom":
        write_nifti(out / "labels" / f"{case_id}.nii.gz", ct.msd_label(), ct.affine)
        if is_mr:
            description = "Synthetic cardiac MRI (bSSFP)"
            write_dicom_series(
                out / case_id,
                ct.image,
                ct.affine,
                patient_id=case_id.upper(),
                modality="MR",
                series_description=description,
            )
        elif isinstance(ct, SyntheticChestCT):
            write_dicom_series(
                out / case_id, ct.image, ct.affine, patient_id=case_id.upper(), series_description="Synthetic chest CT"
            )
        else:
            write_dicom_series(out / case_id, ct.image, ct.affine, patient_id=case_id.upper())
        return {"image": f"./{case_id}", "label": f"./labels/{case_id}.nii.gz"}
    raise ValueError(f"unknown layout {layout!r}")


def _case_id(anatomy: str, layout: str, i: int) -> str:
    if layout == "totalsegmentator":
        return f"Subject_{i + 1:03d}"
    if layout == "dicom":
        return f"case_{i:03d}"
    if anatomy == "abdomen":
        return f"liver_{i}"
    return f"{_MSD_TASKS[anatomy]['prefix']}_{i + 1:03d}"


def generate_cohort(
    out_dir: str | os.PathLike,
    n_cases: int = 8,
    n_test: int = 0,
    seed: int = 0,
    layout: str = "msd",
    shape: Sequence[int | None] | None = None,
    spacing: Sequence[float] | None = None,
    phase: str | None = None,
    n_tumours: int | None = None,
    workers: int = 1,
    progress: bool = True,
    anatomy: str = "abdomen",
    add: bool = False,
) -> Path:
    """Generate ``n_cases`` (+ ``n_test`` held-out) synthetic abdominal CTs, chest CTs or cardiac MRIs into ``out_dir``.

    Args:
        out_dir: destination folder (created).
        n_cases: training cases (``imagesTr`` in the Decathlon layout).
        n_test: held-out cases (``imagesTs``/``labelsTs``; in the other layouts listed in ``cohort.json``).
        seed: cohort seed.
        layout: one of ``msd``, ``totalsegmentator``, ``dicom``.
        shape: voxels per axis (``None`` entries are drawn per case; default 512 x 512 x 50-220 for CT, 320 x 320 x
            90-130 for cardiac MRI).
        spacing: voxel size in mm (default drawn per case: 0.6-0.9 mm in-plane, 1.5-5 mm (abdomen) or 1-5 mm
            (chest) slices; 1.25 x 1.25 x 1.37 mm for cardiac MRI).
        phase: abdomen ``portal_venous`` (default) or ``non_contrast``; chest ``contrast`` or ``non_contrast``
            (default drawn per case); not used for cardiac MRI.
        n_tumours: liver or lung tumours per case (default 0-3 at random); not used for cardiac MRI.
        workers: processes drawing volumes in parallel.
        progress: show a progress bar.
        anatomy: ``abdomen``, ``chest`` or ``cardiac``.
        add: add the cases to the cohort already in ``out_dir`` (its ``cohort.json``, same anatomy and layout): ids
            continue after its last case, ``dataset.json`` and ``cohort.json`` list the old and the new cases. Use
            another ``seed`` than the folder's, or the new cases repeat its first ones.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: unknown anatomy or layout, no case, or (``add``) a folder without a matching ``cohort.json``.

    Example::

        generate_cohort("data/Task06_Lung", n_cases=96, n_test=24, seed=22, anatomy="chest")
        generate_cohort("data/Task06_Lung", n_cases=80, seed=24, anatomy="chest", add=True)  # lung_121..lung_200
    """
    if anatomy not in ANATOMIES:
        raise ValueError(f"unknown anatomy {anatomy!r}; expected one of {', '.join(ANATOMIES)}")
    if anatomy == "cardiac" and (phase is not None or n_tumours is not None):
        raise ValueError("phase and n_tumours do not apply to the cardiac MRI cohort")
    if anatomy == "abdomen" and phase is None:
        phase = "portal_venous"
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if n_cases < 0 or n_test < 0 or n_cases + n_test == 0:
        raise ValueError(f"need at least one case, got n_cases={n_cases}, n_test={n_test}")
    out = Path(out_dir)
    previous = _cohort_to_extend(out, anatomy, layout) if add else {}
    existing = previous.get("cases", [])
    out.mkdir(parents=True, exist_ok=True)
    total = n_cases + n_test
    extra = () if anatomy == "abdomen" else (anatomy,)
    jobs = [(case_seed(seed, i), shape, spacing, phase, n_tumours, *extra) for i in range(total)]
    ids = [_case_id(anatomy, layout, len(existing) + i) for i in range(total)]
    repeated = sorted({c.get("seed") for c in existing} & {job[0] for job in jobs})
    if repeated:
        raise ValueError(
            f"{out / 'cohort.json'}: seed {seed} draws cases already in the cohort (case seeds {repeated[:3]}); "
            "add with another seed"
        )
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
            }
            if isinstance(ct, SyntheticCardiacMR):
                entry.update(blood_signal=ct.blood_signal, noise_sd=ct.noise_sd)
            else:
                entry.update(phase=ct.phase, tumours=ct.tumours)
            entry.update(_write_case(layout, out, case_id, ct, test=split == "test"))
            manifest.append(entry)
    finally:
        if pool:
            pool.shutdown()
    cases = existing + manifest
    if layout == "msd":
        training = [c["id"] for c in cases if c["split"] == "training"]
        test = [c["id"] for c in cases if c["split"] == "test"]
        task = {} if anatomy == "abdomen" else {k: v for k, v in _MSD_TASKS[anatomy].items() if k != "prefix"}
        write_msd_dataset_json(out, training, test, **task)
    cohort = {"generator": _GENERATORS[anatomy], "seed": seed, "layout": layout, "cases": cases}
    if add:
        additions = previous.get("added", []) + [{"seed": seed, "n_cases": n_cases, "n_test": n_test}]
        cohort.update(seed=previous["seed"], added=additions)
    write_json(out / "cohort.json", cohort)
    return out


def _cohort_to_extend(out: Path, anatomy: str, layout: str) -> dict:
    """The ``cohort.json`` of ``out``, which ``add=True`` extends; ValueError if it is not one of this anatomy and
    layout."""
    path = out / "cohort.json"
    if not path.is_file():
        raise ValueError(f"{path}: no cohort to add to (generate one first, without add)")
    try:
        cohort = json.loads(path.read_text())
        generator, previous_layout, cohort["cases"] = cohort["generator"], cohort["layout"], list(cohort["cases"])
        int(cohort["seed"])  # kept by the merged cohort.json: checked before anything is written
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a cohort.json of this generator ({type(err).__name__}: {err})") from None
    if generator != _GENERATORS[anatomy] or previous_layout != layout:
        raise ValueError(
            f"{path}: holds a {previous_layout} cohort of {generator}, cannot add {layout} cases of "
            f"{_GENERATORS[anatomy]}"
        )
    return cohort

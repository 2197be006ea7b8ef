"""2D slice datasets from CT and MRI volumes, split by patient, and the reassembly of slice predictions.

The pipeline turns volumes into a training set of 2D axial slices on disk, once:

* **sources**: a Medical Segmentation Decathlon task folder (``dataset.json``, ``imagesTr``/``labelsTr``,
  held-out ``imagesTs``/``labelsTs``), a folder of TotalSegmentator subjects (``<subject>/ct.nii.gz`` or ``mri.nii.gz``
  with ``<subject>/segmentations/<structure>.nii.gz``), or a datalist JSON of ``{"image", "label"}`` pairs whose images
  may be NIfTI, NRRD or DICOM series folders and whose labels are label maps (TotalSegmentator multilabel files
  included) or TotalSegmentator ``segmentations`` folders;
* **classes**: output class ``i`` (from 1) is the union of the source structures listed ``i``-th, given by
  TotalSegmentator name (``"liver"``, ``"colon"``) or by label value (``1``); see :data:`CLASS_PRESETS`;
* **geometry and intensities**: RAS orientation, then a HU window to 0..1, the lung-recipe normalisation
  (clip to -1000..3071, divide by 3071), a per-volume z-score (MRI) or nothing, then an in-plane resize
  (bilinear for images; nearest for masks, as ``nearest-exact``, which resizes back without a shift), exactly
  the transforms a bundle applies at inference;
* **slice filters**: skip the first ``skip_first`` (inferior-most) slices, keep every slice with foreground and a
  seeded share ``keep_empty`` of the slices without;
* **split by patient**: every case of a patient lands in one split (``training``, ``validation`` or ``test``).

Output folder::

    datalist.json                  settings, classes, training slices, volumes of every split
    slices/<patient>/image_z0042.npy   float32 (H, W), normalised
    slices/<patient>/label_z0042.npy   uint8 (H, W), output class ids
    slices/<patient>/case.json     how the case was prepared (a rerun with the same settings reuses it)
    labels/<patient>.nii.gz        the case's label mapped to the output classes, in the label's own grid

Only training cases are cut into slices; validation and test cases are listed as whole volumes (image + mapped
label) because bundles validate and evaluate whole volumes with ``SliceInferer``.

:func:`reassemble` puts slice predictions of one volume back into a NIfTI in the geometry of that volume.

Example::

    from monai_apps.data.slices import prepare_slices

    datalist = prepare_slices("data/totalseg", "data/abdomen_slices", classes="abdominal_organs", size=(512, 512))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from .writers import write_json, write_nifti

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_PRESETS",
    "NORMALIZATIONS",
    "Case",
    "SliceError",
    "SliceSettings",
    "discover_cases",
    "load_case",
    "prepare_slices",
    "reassemble",
    "resolve_classes",
    "split_by_patient",
]

#: Output classes of the bundles: class name -> source structures (TotalSegmentator names or label values).
CLASS_PRESETS: dict[str, dict[str, list[str | int]]] = {
    "abdominal_organs": {
        "liver": ["liver"],
        "spleen": ["spleen"],
        "kidney_left": ["kidney_left"],
        "kidney_right": ["kidney_right"],
        "bowel": ["small_bowel", "duodenum", "colon"],
    },
    "lung_tumour": {"tumour": [1]},
    "left_atrium": {"left_atrium": [1]},
}
NORMALIZATIONS = ("window", "lung", "zscore", "none")
SPLITS = ("training", "validation", "test")
_NIFTI = (".nii", ".nii.gz")
_LUNG_RANGE = (-1000.0, 3071.0)
_TS_IMAGES = ("ct.nii.gz", "mri.nii.gz")
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class SliceError(ValueError):
    """Bad input to the slice pipeline: one line naming the file and the problem."""


@dataclass
class Case:
    """One image volume and its label.

    Attributes:
        patient: patient id; all cases of one patient go to one split.
        image: NIfTI/NRRD file or DICOM series folder.
        label: label map file, or a TotalSegmentator ``segmentations`` folder of per-structure masks.
        split: ``training``, ``validation`` or ``test`` when fixed by the source, else ``None`` (to be split).
        case_id: unique name of the case (the patient id unless a patient has several cases).
    """

    patient: str
    image: str
    label: str
    split: str | None = None
    case_id: str = ""

    def __post_init__(self) -> None:
        self.case_id = self.case_id or self.patient
        if self.split is not None and self.split not in SPLITS:
            raise SliceError(f"{self.image}: unknown split {self.split!r}; expected one of {', '.join(SPLITS)}")


@dataclass
class SliceSettings:
    """How volumes become slices (recorded in ``datalist.json`` and in each ``case.json``).

    Attributes:
        classes: output class name -> source structures (TotalSegmentator names or label values), or a preset
            name of :data:`CLASS_PRESETS`.
        normalize: ``window`` (``window`` HU -> 0..1), ``lung`` (clip to -1000..3071 HU, divide by 3071),
            ``zscore`` (per volume, for MRI) or ``none``.
        window: HU window of ``normalize="window"``.
        size: in-plane size ``(H, W)`` of the slices, or ``None`` to keep the volume's.
        skip_first: slices skipped at the inferior end (RAS order) of every volume.
        keep_empty: share of the training slices without foreground that are kept (seeded), 0..1.
        min_foreground: foreground pixels a slice needs to count as a foreground slice.
        context: neighbouring slices stored on each side of a training slice (2.5D input): the image file then
            holds ``(2 * context + 1, H, W)``, slices ``k - context .. k + context`` (the end slices repeated at
            the top and bottom of the volume); ``0`` stores the ``(H, W)`` slice alone.
    """

    classes: dict[str, list[str | int]] | str = "abdominal_organs"
    normalize: str = "window"
    window: tuple[float, float] = (-160.0, 240.0)
    size: tuple[int, int] | None = (512, 512)
    skip_first: int = 0
    keep_empty: float = 0.1
    min_foreground: int = 1
    context: int = 0
    class_names: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.classes = resolve_classes(self.classes)
        self.class_names = ["background", *self.classes]
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalize {self.normalize!r}; expected one of {', '.join(NORMALIZATIONS)}")
        self.window = (float(self.window[0]), float(self.window[1]))
        if self.window[0] >= self.window[1]:
            raise ValueError(f"window {self.window} must be (low, high) with low < high")
        if self.size is not None:
            self.size = (int(self.size[0]), int(self.size[1]))
            if min(self.size) < 8:
                raise ValueError(f"size {self.size} is too small: at least 8 pixels per side")
        if not 0.0 <= float(self.keep_empty) <= 1.0:
            raise ValueError(f"keep_empty must be in 0..1, got {self.keep_empty}")
        if int(self.skip_first) < 0:
            raise ValueError(f"skip_first must be >= 0, got {self.skip_first}")
        if int(self.context) < 0:
            raise ValueError(f"context must be >= 0, got {self.context}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("class_names")
        out["window"] = list(self.window)
        out["size"] = list(self.size) if self.size is not None else None
        if not self.context:
            out.pop("context")  # the fingerprint of slices prepared before 2.5D support stays the same
        return out

    def fingerprint(self) -> str:
        """A short hash of the settings that change the slices."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def resolve_classes(classes: Mapping[str, Sequence[str | int]] | str) -> dict[str, list[str | int]]:
    """The class mapping of a preset name, or a validated copy of an explicit mapping.

    Raises:
        ValueError: unknown preset, or a class with no source structure.
    """
    if isinstance(classes, str):
        if classes not in CLASS_PRESETS:
            raise ValueError(f"unknown class preset {classes!r}; presets: {', '.join(CLASS_PRESETS)}")
        classes = CLASS_PRESETS[classes]
    out = {}
    for name, sources in dict(classes).items():
        sources = [sources] if isinstance(sources, (str, int)) else list(sources)
        if not sources:
            raise ValueError(f"class {name!r} lists no source structure")
        out[str(name)] = [s if isinstance(s, str) else int(s) for s in sources]
    if not out:
        raise ValueError("no output classes given")
    return out


# ---------------------------------------------------------------------------------------------------- discovery
def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI)


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _decathlon_cases(root: Path) -> list[Case]:
    cases = []
    index = root / "dataset.json"
    if index.is_file():
        entries = json.loads(index.read_text()).get("training", [])
        pairs = [(root / e["image"], root / e["label"]) for e in entries]
    else:
        pairs = [(p, root / "labelsTr" / p.name) for p in sorted((root / "imagesTr").iterdir()) if _is_nifti(p)]
    for image, label in pairs:
        cases.append(Case(patient=_stem(image), image=str(image), label=str(label)))
    if (root / "imagesTs").is_dir() and (root / "labelsTs").is_dir():
        for image in sorted(p for p in (root / "imagesTs").iterdir() if _is_nifti(p)):
            label = root / "labelsTs" / image.name
            if label.is_file():
                cases.append(Case(patient=_stem(image), image=str(image), label=str(label), split="test"))
    return cases


def _totalsegmentator_cases(root: Path, subjects: list[Path]) -> list[Case]:
    test = set()
    manifest = root / "cohort.json"
    if manifest.is_file():
        test = {c["id"] for c in json.loads(manifest.read_text()).get("cases", []) if c.get("split") == "test"}
    cases = []
    for subject in subjects:
        label = subject / "segmentations"
        if not label.is_dir():
            multilabel = [p for p in subject.iterdir() if _is_nifti(p) and p.name.startswith("segmentations")]
            if not multilabel:
                raise SliceError(f"{subject}: TotalSegmentator subject without segmentations/ or segmentations.nii.gz")
            label = multilabel[0]
        split = "test" if subject.name in test else None
        image = next(subject / n for n in _TS_IMAGES if (subject / n).is_file())
        cases.append(Case(patient=subject.name, image=str(image), label=str(label), split=split))
    return cases


def _json_cases(path: Path) -> list[Case]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SliceError(f"{path}: not valid JSON ({err})") from err
    groups = {"training": data} if isinstance(data, list) else {k: data.get(k, []) for k in SPLITS}
    if not any(groups.values()):
        raise SliceError(f"{path}: no cases (a list of {{image, label}} or training/validation/test lists)")
    fixed_validation = bool(groups.get("validation"))
    cases = []
    for key, entries in groups.items():
        for entry in entries:
            if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
                raise SliceError(f"{path}: every case needs 'image' and 'label', got {entry!r}")
            image, label = (str((path.parent / entry[k]).resolve()) for k in ("image", "label"))
            split = entry.get("split") or (None if key == "training" and not fixed_validation else key)
            cases.append(Case(patient=str(entry.get("patient") or _stem(image)), image=image, label=label, split=split))
    return cases


def discover_cases(source: str | os.PathLike) -> list[Case]:
    """The labelled cases of a source, recognised by its layout.

    Args:
        source: a Decathlon task folder, a folder of TotalSegmentator subjects, or a datalist JSON file (a list of
            ``{"image", "label", "patient"?, "split"?}`` or ``{"training": [...], "validation": [...],
            "test": [...]}``; relative paths are relative to the JSON file).

    Raises:
        SliceError: missing source, unknown layout, or no cases.
    """
    source = Path(source)
    if not source.exists():
        raise SliceError(f"{source}: no such file or folder")
    source = source.resolve()
    if source.is_file():
        if source.suffix.lower() != ".json":
            raise SliceError(f"{source}: expected a folder or a datalist .json file")
        cases = _json_cases(source)
    elif (source / "dataset.json").is_file() or (source / "imagesTr").is_dir():
        cases = _decathlon_cases(source)
    else:
        subjects = sorted(p for p in source.iterdir() if p.is_dir() and any((p / n).is_file() for n in _TS_IMAGES))
        if not subjects:
            raise SliceError(
                f"{source}: not a Decathlon folder (dataset.json, imagesTr/), a folder of TotalSegmentator subjects "
                "(<subject>/ct.nii.gz + segmentations/) or a datalist JSON"
            )
        cases = _totalsegmentator_cases(source, subjects)
    if not cases:
        raise SliceError(f"{source}: no labelled cases found")
    seen: dict[str, int] = {}
    for case in cases:
        n = seen.get(case.patient, 0)
        seen[case.patient] = n + 1
        case.case_id = case.patient if n == 0 else f"{case.patient}_{n}"
    return cases


def split_by_patient(cases: list[Case], val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[Case]]:
    """Split cases into training, validation and test by patient; splits fixed by the source are kept.

    Patients whose split is not fixed are shuffled with ``seed``; ``round(n * val_fraction)`` of them (at least
    one) go to validation, unless the source already names validation cases. A source whose cases are all fixed
    to ``test`` gives an evaluation set without training slices.

    Raises:
        SliceError: a patient with cases in two fixed splits, or too few patients to split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    fixed: dict[str, str] = {}
    for case in cases:
        if case.split is None:
            continue
        if fixed.setdefault(case.patient, case.split) != case.split:
            raise SliceError(
                f"{case.image}: patient {case.patient!r} has cases in {fixed[case.patient]} and {case.split}"
            )
    pool = sorted({c.patient for c in cases if c.patient not in fixed})
    rng = np.random.default_rng(seed)
    rng.shuffle(pool)
    assignment = dict(fixed)
    has_validation = "validation" in fixed.values()
    if pool and not has_validation:
        if len(pool) < 2:
            raise SliceError(f"need at least 2 patients to split into training and validation, found {len(pool)}")
        n_val = min(len(pool) - 1, max(1, int(round(len(pool) * val_fraction))))
        assignment.update({p: "validation" for p in pool[:n_val]})
        pool = pool[n_val:]
    assignment.update({p: "training" for p in pool})
    out: dict[str, list[Case]] = {s: [] for s in SPLITS}
    for case in cases:
        case.split = assignment[case.patient]
        out[case.split].append(case)
    return out


# -------------------------------------------------------------------------------------------------- case loading
def _load(path: str):
    """A volume as a channel-first MetaTensor (NIfTI, NRRD, DICOM series), with a one-line error."""
    from monai.transforms import LoadImage

    p = Path(path)
    if not p.exists():
        raise SliceError(f"{path}: file not found")
    if p.is_file() and p.stat().st_size == 0:
        raise SliceError(f"{path}: empty file")
    try:
        img = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as err:  # readers raise many types for corrupt files
        root = err
        while root.__cause__ is not None:
            root = root.__cause__
        raise SliceError(f"{path}: unreadable volume ({type(root).__name__}: {str(root).splitlines()[0]})") from err
    if img.ndim != 4 or img.shape[0] != 1:
        raise SliceError(f"{path}: expected a single-channel 3D volume, got shape {tuple(img.shape)}")
    return img


def _source_value(name: str | int, where: str) -> int:
    if isinstance(name, int):
        return name
    from totalsegmentator.map_to_binary import class_map

    ids = {v: int(k) for k, v in class_map["total"].items()}
    if name not in ids:
        raise SliceError(f"{where}: {name!r} is not a TotalSegmentator 'total' structure name")
    return ids[name]


def _map_label_volume(values: np.ndarray, classes: dict[str, list[str | int]], where: str) -> np.ndarray:
    out = np.zeros(values.shape, dtype=np.uint8)
    for cls, sources in enumerate(classes.values(), start=1):
        for source in sources:
            out[values == _source_value(source, where)] = cls
    return out


def _map_mask_folder(folder: Path, classes: dict[str, list[str | int]], shape, affine) -> np.ndarray:
    """Union of TotalSegmentator per-structure masks; a structure without a file is absent from the scan."""
    out = np.zeros(shape, dtype=np.uint8)
    missing = []
    for cls, sources in enumerate(classes.values(), start=1):
        for source in sources:
            if not isinstance(source, str):
                raise SliceError(f"{folder}: a segmentations folder needs structure names, got label value {source}")
            path = folder / f"{source}.nii.gz"
            if not path.is_file():
                missing.append(path.name)
                continue
            try:
                mask = nib.load(str(path))
                data = np.asarray(mask.dataobj)
            except Exception as err:
                raise SliceError(f"{path}: unreadable mask ({type(err).__name__}: {err})") from err
            if data.shape != tuple(shape):
                raise SliceError(f"{path}: mask shape {data.shape} does not match the image shape {tuple(shape)}")
            if not np.allclose(mask.affine, affine, atol=1e-3):
                raise SliceError(f"{path}: mask affine does not match the image affine")
            out[data > 0] = cls
    if missing:  # TotalSegmentator writes every mask, empty ones too: a missing file is worth a line in the log
        logger.warning(f"{folder}: no mask file for {', '.join(missing)}; taken as absent from the scan")
    return out


def load_case(case: Case, settings: SliceSettings, allow_empty: bool = False):
    """Load one case as the bundles see it: RAS, normalised, resized image and label, plus its mapped label.

    Returns:
        ``(image, label, mapped, mapped_affine)``: the preprocessed image ``(1, H, W, Z)`` (MetaTensor, float32),
        the preprocessed label ``(H, W, Z)`` (uint8 class ids), the label mapped to the output classes in the
        label's own grid, and that grid's affine.

    Args:
        case: the case.
        settings: how to preprocess it.
        allow_empty: accept a label without any of the output classes (a patient without tumour); otherwise an
            empty label is an error (usually a wrong class mapping or label file).

    Raises:
        SliceError: unreadable files, an image/label pair with another grid, or a label without foreground.
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import NormalizeIntensity, Orientation, Resize, ScaleIntensityRange

    image = _load(case.image)
    label_path = Path(case.label)
    if label_path.is_dir():
        if not any(label_path.glob("*.nii.gz")):
            raise SliceError(f"{label_path}: segmentations folder holds no masks")
        mapped = _map_mask_folder(label_path, settings.classes, image.shape[1:], np.asarray(image.affine))
        mapped_affine = np.asarray(image.affine, dtype=np.float64)
    else:
        label_img = _load(case.label)
        values = np.asarray(label_img[0])
        if np.issubdtype(values.dtype, np.floating) and not np.array_equal(values, np.round(values)):
            raise SliceError(f"{case.label}: label holds non-integer values; expected a label map")
        mapped = _map_label_volume(values.astype(np.int64), settings.classes, case.label)
        mapped_affine = np.asarray(label_img.affine, dtype=np.float64)
    if not allow_empty and not mapped.any():
        raise SliceError(f"{case.label}: empty label (none of {', '.join(settings.classes)} is present)")
    ras = Orientation(axcodes="RAS", labels=_RAS_LABELS)
    image = ras(image)
    label = ras(MetaTensor(torch.from_numpy(mapped[None]), affine=torch.as_tensor(mapped_affine)))
    if tuple(image.shape) != tuple(label.shape):
        raise SliceError(
            f"{case.label}: label shape {tuple(label.shape[1:])} does not match image shape "
            f"{tuple(image.shape[1:])} of {case.image} (compared in RAS orientation)"
        )
    spacing = np.linalg.norm(np.asarray(image.affine)[:3, :3], axis=0)
    if not np.allclose(np.asarray(image.affine), np.asarray(label.affine), atol=0.01 * float(spacing.min())):
        raise SliceError(f"{case.label}: label grid (affine) does not match the grid of {case.image}")
    image = image.float()
    if settings.normalize == "window":
        lo, hi = settings.window
        image = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(image)
    elif settings.normalize == "lung":
        lo, hi = _LUNG_RANGE
        image = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo / hi, b_max=1.0, clip=True)(image)
    elif settings.normalize == "zscore":
        image = NormalizeIntensity()(image)
    if settings.size is not None:
        size = (*settings.size, -1)
        image = Resize(spatial_size=size, mode="bilinear")(image)
        label = Resize(spatial_size=size, mode="nearest-exact")(label)
    return image, np.asarray(label[0], dtype=np.uint8), mapped, mapped_affine


# -------------------------------------------------------------------------------------------------- preparation
def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def _slice_with_context(volume: np.ndarray, k: int, context: int) -> np.ndarray:
    """Slice ``k`` of an ``(H, W, Z)`` volume, ``(H, W)``, or with ``context`` neighbours a side ``(2c+1, H, W)``."""
    if context == 0:
        return np.ascontiguousarray(volume[:, :, k])
    index = np.clip(np.arange(k - context, k + context + 1), 0, volume.shape[-1] - 1)
    return np.ascontiguousarray(np.moveaxis(volume[:, :, index], -1, 0))


def _prepare_case(case: Case, settings: SliceSettings, out: Path, seed: int, allow_empty: bool) -> dict:
    """Write one case (slices for training cases, the mapped label for all) and return its ``case.json`` record."""
    folder = out / "slices" / case.case_id
    record_file = folder / "case.json"
    want_slices = case.split == "training"
    label_file = out / "labels" / f"{case.case_id}.nii.gz"
    key = {
        "fingerprint": settings.fingerprint(),
        "image": case.image,
        "label": case.label,
        "slices": want_slices,
        "seed": seed,
    }
    if record_file.is_file() and label_file.is_file():
        record = json.loads(record_file.read_text())
        if record.get("key") == key:
            return record
    image, label, mapped, mapped_affine = load_case(case, settings, allow_empty=allow_empty)
    write_nifti(label_file, mapped, mapped_affine)
    n_slices = int(image.shape[-1])
    slices = []
    if want_slices:
        rng = np.random.default_rng([seed, int(hashlib.sha1(case.case_id.encode()).hexdigest()[:8], 16)])
        tmp = folder.with_name(f".{folder.name}.part-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            img = np.asarray(image[0], dtype=np.float32)
            for k in range(int(settings.skip_first), n_slices):
                lab = np.ascontiguousarray(label[:, :, k])
                counts = np.bincount(lab.ravel(), minlength=len(settings.class_names))
                present = [int(c) for c in np.nonzero(counts[1:] >= settings.min_foreground)[0] + 1]
                keep_draw = rng.random()
                if not present and keep_draw >= settings.keep_empty:
                    continue
                _write_npy(tmp / f"image_z{k:04d}.npy", _slice_with_context(img, k, int(settings.context)))
                _write_npy(tmp / f"label_z{k:04d}.npy", lab)
                slices.append({"slice": k, "classes": present})
            record = {"key": key, "n_slices": n_slices, "shape": list(image.shape[1:]), "slices": slices}
            (tmp / "case.json").write_text(json.dumps(record, indent=1) + "\n")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        record = {"key": key, "n_slices": n_slices, "shape": list(image.shape[1:]), "slices": []}
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write_json(record_file, record)
    return record


def prepare_slices(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    classes: Mapping[str, Sequence[str | int]] | str = "abdominal_organs",
    normalize: str = "window",
    window: Sequence[float] = (-160.0, 240.0),
    size: Sequence[int] | None = (512, 512),
    skip_first: int = 0,
    keep_empty: float = 0.1,
    min_foreground: int = 1,
    context: int = 0,
    val_fraction: float = 0.2,
    seed: int = 0,
    allow_empty: bool = False,
    progress: bool = True,
) -> Path:
    """Prepare a 2D slice dataset from volumes, once, and write its ``datalist.json``.

    Args:
        source: Decathlon folder, folder of TotalSegmentator subjects, or datalist JSON (see :func:`discover_cases`).
        out_dir: destination folder (created); a rerun with the same settings reuses the cases already written.
        classes: output classes (see :class:`SliceSettings`), or a preset name of :data:`CLASS_PRESETS`.
        normalize: ``window``, ``lung``, ``zscore`` or ``none``.
        window: HU window for ``normalize="window"``.
        size: in-plane slice size ``(H, W)``; ``None`` keeps the volume's.
        skip_first: slices skipped at the inferior end of every volume.
        keep_empty: share of training slices without foreground kept.
        min_foreground: pixels a slice needs to count as foreground.
        context: neighbouring slices stored on each side of every training slice as extra channels (2.5D input;
            see :class:`SliceSettings`).
        val_fraction: share of the patients (not fixed to a split by the source) held for validation.
        seed: seed of the split and of the empty-slice sampling.
        allow_empty: accept cases whose label holds none of the classes (patients without tumour).
        progress: show a progress bar.

    Returns:
        the path of ``datalist.json``.

    Raises:
        SliceError: bad source or case (one line naming the file and the problem); nothing is left half-written.
    """
    settings = SliceSettings(
        classes=classes,
        normalize=normalize,
        window=tuple(window),
        size=None if size is None else tuple(size),
        skip_first=skip_first,
        keep_empty=keep_empty,
        min_foreground=min_foreground,
        context=context,
    )
    cases = discover_cases(source)
    splits = split_by_patient(cases, val_fraction=val_fraction, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datalist: dict = {
        "source": str(Path(source).resolve()),
        "settings": settings.to_dict(),
        "class_names": settings.class_names,
        "seed": seed,
        "val_fraction": val_fraction,
        "training": [],
        "volumes": {s: [] for s in SPLITS},
        "patients": {s: sorted({c.patient for c in splits[s]}) for s in SPLITS},
    }
    for case in tqdm(cases, desc="prepare slices", unit="case", disable=not progress):
        record = _prepare_case(case, settings, out, seed, allow_empty)
        datalist["volumes"][case.split].append(
            {
                "image": case.image,
                "label": f"labels/{case.case_id}.nii.gz",
                "patient": case.patient,
                "case": case.case_id,
                "n_slices": record["n_slices"],
            }
        )
        for s in record["slices"]:
            k = s["slice"]
            datalist["training"].append(
                {
                    "image": f"slices/{case.case_id}/image_z{k:04d}.npy",
                    "label": f"slices/{case.case_id}/label_z{k:04d}.npy",
                    "patient": case.patient,
                    "slice": k,
                    "classes": s["classes"],
                }
            )
    counts = np.zeros(len(settings.class_names), dtype=np.int64)
    for item in datalist["training"]:
        counts[item["classes"] or [0]] += 1
    datalist["training_slices_per_class"] = dict(zip(settings.class_names, counts.tolist(), strict=True))
    return write_json(out / "datalist.json", datalist)


# --------------------------------------------------------------------------------------------------- reassembly
def reassemble(
    slices: Mapping[int, np.ndarray] | np.ndarray,
    reference: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    mode: str = "nearest-exact",
    dtype: np.dtype | type = np.uint8,
) -> nib.Nifti1Image:
    """Put the slice predictions of one volume back into a NIfTI in the geometry of that volume.

    The slices are in the space the pipeline and the bundles work in: axial slices of the RAS-oriented volume,
    resized in-plane to ``(H, W)``. Each is resized back to the volume's in-plane size, stacked, and reoriented to
    the reference's own axis order, so the result has the reference's shape and affine.

    Args:
        slices: ``{slice index: (H, W) array}`` (missing slices are zero, e.g. skipped ones), or an array
            ``(n_slices, H, W)`` holding every slice in RAS order.
        reference: the volume the slices came from (NIfTI, NRRD or DICOM series folder).
        out_path: where to write the NIfTI (atomically), or ``None``.
        mode: ``nearest-exact`` for label maps (the inverse of the pipeline's resize), ``bilinear`` for
            probabilities.
        dtype: data type of the output.

    Returns:
        the NIfTI image.

    Raises:
        SliceError: a slice index outside the volume, or slices of different sizes.
    """
    import torch
    from monai.transforms import Resize

    ref = _load(str(reference))
    affine = np.asarray(ref.affine, dtype=np.float64)
    native_shape = tuple(int(s) for s in ref.shape[1:])
    src = nib.orientations.io_orientation(affine)
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    to_ras = nib.orientations.ornt_transform(src, ras)
    ras_shape = np.asarray(nib.orientations.apply_orientation(np.empty(native_shape, dtype=np.uint8), to_ras).shape)
    n = int(ras_shape[2])
    if isinstance(slices, np.ndarray):
        if slices.ndim != 3 or slices.shape[0] != n:
            raise SliceError(f"{reference}: expected {n} slices of shape (H, W), got an array of shape {slices.shape}")
        items = dict(enumerate(slices))
    else:
        items = dict(slices)
    if not items:
        raise SliceError(f"{reference}: no slices to reassemble")
    sizes = {tuple(np.shape(s)) for s in items.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 2:
        raise SliceError(f"{reference}: slices must all be 2D of one size, got sizes {sorted(sizes)}")
    bad = [k for k in items if not 0 <= int(k) < n]
    if bad:
        raise SliceError(f"{reference}: slice indices {bad[:5]} outside the volume's {n} slices")
    h, w = next(iter(sizes))
    stack = np.zeros((1, h, w, n), dtype=np.float32)
    for k, s in items.items():
        stack[0, :, :, int(k)] = np.asarray(s, dtype=np.float32)
    resized = Resize(spatial_size=(int(ras_shape[0]), int(ras_shape[1]), n), mode=mode)(torch.from_numpy(stack))
    volume = np.asarray(resized[0])
    native = nib.orientations.apply_orientation(volume, nib.orientations.ornt_transform(ras, src))
    if np.issubdtype(np.dtype(dtype), np.integer):
        native = np.rint(native)
    native = np.ascontiguousarray(native.astype(dtype))
    if out_path is not None:
        write_nifti(out_path, native, affine)
    img = nib.Nifti1Image(native, affine)
    return img

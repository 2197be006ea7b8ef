"""Synthetic posteroanterior chest radiographs, with and without pneumonic consolidation, written as DICOM.

A radiograph is the line integral of attenuation through the patient. Each image is drawn from a seed as a 2D
attenuation map in millimetres: the soft tissue of an elliptic thorax, two lungs whose air replaces soft tissue (their
depth falls off towards the edges, the right hemidiaphragm sits higher), the heart shadow (left of the midline),
mediastinum, the thoracic spine with vertebral bodies, ten posterior ribs per side, clavicles and shoulder girdle
soft tissue. Consolidation (the ``PNEUMONIA`` class) fills part of a lung's depth with fluid-density tissue in one to
three lobulated patches, lower zones more often; its density varies from faint to dense, so some cases are subtle.
Patient size, position and tilt, exposure, scatter, blur and quantum noise vary per image.

The detector signal is written as a DICOM CR (Computed Radiography) or DX (Digital X-Ray, for presentation)
object, ``MONOCHROME1`` (CR-style, white is low signal) or ``MONOCHROME2``, 12 to 15 stored bits, with or without a
rescale slope/intercept, uncompressed or JPEG 2000 lossless (pylibjpeg's encoder), so a reader must handle all the
variants it meets in practice. Only synthetic identifiers are written.

Layout (the Kaggle/Kermany "chest_xray" layout, with DICOM files)::

    out/{train,val,test}/{NORMAL,PNEUMONIA}/cxr_00001.dcm
    out/labels.csv     file, split, label, modality, photometric, transfer syntax, consolidation boxes

Example::

    python -m monai_apps generate_cxr --out data/cxr --n_train 600 --n_val 100 --n_test 300
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, zoom
from tqdm import tqdm

from .writers import atomic_path

__all__ = ["CLASS_NAMES", "SyntheticCXR", "generate_cxr", "generate_cxr_dataset", "write_cxr_dicom"]

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
MU_SOFT = 0.021  # 1/mm, water-like tissue at ~60 keV effective
MU_BONE = 0.048  # 1/mm, cortical/cancellous mix of a rib or vertebra


@dataclass
class SyntheticCXR:
    """One generated radiograph.

    Attributes:
        image: float32 ``(rows, cols)`` display values, bright where attenuation is high (MONOCHROME2 sense), 0..1.
        pixel_spacing: mm per pixel (row, column).
        pneumonia: whether it has consolidation.
        boxes: consolidation bounding boxes ``[row0, col0, row1, col1]`` in pixels.
        lung_mask: boolean lung fields (for tests: lungs must be darker than the mediastinum).
        seed: the seed it was drawn from.
    """

    image: np.ndarray
    pixel_spacing: tuple[float, float]
    pneumonia: bool
    boxes: list[list[int]] = field(default_factory=list)
    lung_mask: np.ndarray | None = None
    seed: int = 0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    n = gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def generate_cxr(
    seed: int,
    pneumonia: bool,
    size: int = 512,
    pixel_spacing: float | None = None,
    severity: float | None = None,
) -> SyntheticCXR:
    """Draw one PA chest radiograph.

    Args:
        seed: the image's seed (same seed and arguments give the same image).
        pneumonia: paint consolidation.
        size: rows and columns.
        pixel_spacing: mm per pixel (default: the field of view, 360-420 mm, over ``size``).
        severity: consolidation density 0..1 (default drawn 0.35-0.9).

    Returns:
        a :class:`SyntheticCXR`.
    """
    rng = np.random.default_rng(seed)
    fov = float(rng.uniform(360, 420))
    sp_full = float(pixel_spacing or fov / size)
    # anatomy is drawn on a half-resolution grid (smooth at that scale), noise and blur at full resolution
    n = max(8, size // 2)
    sp = sp_full * size / n
    # patient coordinates (mm): x to the image's right (patient's left in a PA view), y downwards (caudal)
    c = (np.arange(n, dtype=np.float32) - (n - 1) / 2) * sp
    tilt = float(rng.normal(0, 0.04))
    shift = rng.normal(0, 8, size=2)
    xx, yy = np.meshgrid(c, c)  # (rows=y, cols=x)
    x = np.cos(tilt) * xx + np.sin(tilt) * yy - shift[0]
    y = -np.sin(tilt) * xx + np.cos(tilt) * yy - shift[1] - 20.0

    scale = float(rng.uniform(0.85, 1.12))
    a = 150.0 * scale  # thorax half-width
    depth = float(rng.uniform(190, 250)) * scale  # AP thickness
    # soft tissue: an elliptic chest below the shoulders, the neck above
    width = np.where(y < -175 * scale, 45 * scale, a * (1 + 0.12 * np.clip((y + 60) / 200, -1, 1)))
    tissue = depth * np.sqrt(np.clip(1 - (x / width) ** 2, 0, None))
    tissue *= np.clip((y + 230 * scale) / 40, 0, 1)  # top of the neck / image
    shoulder = 30 * np.exp(-(((np.abs(x) - 135 * scale) / (40 * scale)) ** 2) - ((y + 165 * scale) / (35 * scale)) ** 2)
    tissue += shoulder
    atten = MU_SOFT * tissue

    # lungs: depth of air, falling off towards the lung edges; domes of the diaphragm at the bottom
    lung_air = np.zeros_like(x)
    lungs = np.zeros(x.shape, dtype=bool)
    for side in (-1, 1):  # -1: patient's right (image left)
        cx = side * float(rng.uniform(68, 80)) * scale
        ax = float(rng.uniform(58, 68)) * scale
        top = -float(rng.uniform(150, 170)) * scale
        dome = float(rng.uniform(60, 95)) * scale + (12 * scale if side == 1 else 0.0)  # right dome higher
        cy, ay = (top + dome) / 2, (dome - top) / 2
        r2 = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2
        # flatter medial border (mediastinum) and a sharp costophrenic angle laterally
        medial = side * (x - side * 22 * scale) > 0
        shape = np.clip(1 - r2, 0, None) * medial
        d = depth * 0.72 * np.sqrt(shape)
        lung_air = np.maximum(lung_air, d)
        lungs |= shape > 0.02
    # heart: soft tissue displacing lung, centred left of the midline
    hx, hy = float(rng.uniform(18, 35)) * scale, float(rng.uniform(35, 60)) * scale
    hr = np.array([rng.uniform(58, 75), rng.uniform(48, 60)]) * scale
    heart = np.clip(1 - ((x - hx) / hr[0]) ** 2 - ((y - hy) / hr[1]) ** 2, 0, None)
    lung_air = np.clip(lung_air - 0.9 * depth * np.sqrt(heart), 0, None)
    lungs &= heart < 0.05
    # consolidation: fluid-density tissue filling part of the lung depth in lobulated patches
    boxes: list[list[int]] = []
    fill = np.zeros_like(x)
    if pneumonia:
        crng = np.random.default_rng([int(seed), 1])  # its own stream: the same anatomy with or without
        sev = float(severity if severity is not None else crng.uniform(0.35, 0.9))
        ys, xs = np.nonzero(lungs & (lung_air > 0.3 * lung_air.max()))
        weights = np.clip(y[ys, xs] + 150 * scale, 1, None) ** 1.5  # lower zones more often
        for _ in range(int(crng.integers(1, 4))):
            k = crng.choice(len(ys), p=weights / weights.sum())
            r0 = float(crng.uniform(22, 55)) * scale
            blob = np.exp(-(((x - x[ys[k], xs[k]]) ** 2 + (y - y[ys[k], xs[k]]) ** 2) / (2 * r0**2)))
            lobular = blob * (1 + 0.5 * _smooth_noise(crng, x.shape, 5.0 / sp))
            patch = np.clip((lobular - 0.45) / 0.2, 0, 1) * (lung_air > 0)
            if patch.max() == 0:
                continue
            fill = np.maximum(fill, sev * patch)
            rr, cc = np.nonzero(patch > 0.5)
            if rr.size:
                f = size / n
                boxes.append([int(rr.min() * f), int(cc.min() * f), int((rr.max() + 1) * f), int((cc.max() + 1) * f)])
        fill = gaussian_filter(fill, 2.0 / sp)  # soft, ill-defined margins
        # air bronchograms: thin branching lucencies left inside the consolidation
        bronch = np.abs(_smooth_noise(crng, x.shape, 2.0 / sp)) < 0.08
        fill = fill * np.where(bronch, 0.55, 1.0)
    atten -= MU_SOFT * lung_air * (1 - fill)  # air replaces tissue, except where consolidation filled it
    # mediastinum and spine: vertebral bodies with disc spaces along the midline
    spine_w = float(rng.uniform(16, 20)) * scale
    vert = np.clip(1 - (x / spine_w) ** 2, 0, None) ** 0.5
    discs = 0.75 + 0.25 * (np.cos(2 * np.pi * (y / (28 * scale))) > -0.7)
    atten += MU_BONE * 30 * vert * discs * (y > -200 * scale)
    # posterior ribs: arcs from the spine running laterally and down; clavicles across the apices
    bone = np.zeros_like(x)
    for i in range(10):
        y0 = (-165 + 27 * i) * scale + rng.normal(0, 2)
        for side in (-1, 1):
            u = side * x / a  # 0 at the spine, 1 at the chest wall
            centre = y0 - 22 * scale * np.sin(np.pi * np.clip(u, 0, 1) * 0.9) + 30 * scale * np.clip(u - 0.6, 0, None)
            band = np.exp(-(((y - centre) / (4.5 * scale)) ** 2)) * (u > 0.12) * (u < 1.02)
            bone += band * (1 + 0.4 * (np.abs(y - centre) > 3 * scale))  # cortical edges a little denser
    for side in (-1, 1):
        u = side * x / a
        centre = -150 * scale - 25 * scale * u + 10 * scale * u**2
        bone += 1.3 * np.exp(-(((y - centre) / (6 * scale)) ** 2)) * (u > 0.1) * (u < 0.85)
    atten += MU_BONE * 9 * bone * (tissue > 5)
    # image formation at full resolution: transmission with scatter, log detector, blur and quantum noise
    if n != size:
        atten = zoom(atten, size / n, order=1, grid_mode=True, mode="nearest")
        lungs = zoom(lungs.astype(np.uint8), size / n, order=0, grid_mode=True, mode="nearest").astype(bool)
    exposure = float(rng.uniform(0.8, 1.25))
    transmitted = np.exp(-np.clip(atten, 0, None)) + float(rng.uniform(0.004, 0.012))
    counts = 4000.0 * exposure * transmitted
    noisy = rng.poisson(counts).astype(np.float32) + 1.0
    signal = -np.log(noisy / (4000.0 * exposure))
    signal = gaussian_filter(signal, float(rng.uniform(0.5, 1.1)))
    image = np.clip(signal / 6.0, 0, 1).astype(np.float32)
    return SyntheticCXR(image, (sp_full, sp_full), bool(pneumonia), boxes, lungs, int(seed))


def write_cxr_dicom(
    path: str | os.PathLike,
    cxr: SyntheticCXR,
    modality: str = "CR",
    photometric: str = "MONOCHROME1",
    bits_stored: int = 12,
    rescale: tuple[float, float] | None = None,
    jpeg2000: bool = False,
    patient_id: str = "SYNTHCXR",
) -> Path:
    """Write a radiograph as a DICOM CR or DX object, atomically.

    Args:
        path: destination ``.dcm``.
        cxr: the radiograph.
        modality: ``CR`` (Computed Radiography Image Storage) or ``DX`` (Digital X-Ray Image Storage - For
            Presentation).
        photometric: ``MONOCHROME1`` (stored values inverted: low values display white) or ``MONOCHROME2``.
        bits_stored: 8 to 16.
        rescale: ``(slope, intercept)`` written as RescaleSlope/RescaleIntercept; stored values are chosen so that
            ``slope * stored + intercept`` is the signal (``None``: no rescale tags).
        jpeg2000: compress with JPEG 2000 lossless (needs pylibjpeg-openjpeg's encoder).
        patient_id: PatientID and PatientName.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        generate_uid,
    )

    if modality not in ("CR", "DX"):
        raise ValueError(f"modality must be CR or DX, got {modality!r}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    top = 2**bits_stored - 1
    signal = np.clip(cxr.image, 0, 1) * top  # bright = attenuating, MONOCHROME2 sense
    value = top - signal if photometric == "MONOCHROME1" else signal
    if rescale is not None:
        slope, intercept = rescale
        # the modality LUT output is the value; stored = (value - intercept) / slope must fit the stored bits
        stored = (value - intercept) / slope
    else:
        stored = value
    stored = np.clip(np.rint(stored), 0, top).astype(np.uint16)
    sop_class = ComputedRadiographyImageStorage if modality == "CR" else DigitalXRayImageStorageForPresentation
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientName = ds.PatientID = patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    now = _dt.datetime(2026, 1, 1, 12, 0, 0)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.Manufacturer = "monai_apps synthetic"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]  # PA view: columns run to the patient's left, rows to the feet
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageType = ["DERIVED", "PRIMARY"]
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.PixelSpacing = ds.ImagerPixelSpacing = [f"{cxr.pixel_spacing[0]:.4f}", f"{cxr.pixel_spacing[1]:.4f}"]
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
        ds.RescaleType = "US"
    ds.WindowCenter, ds.WindowWidth = f"{top / 2:.0f}", f"{top:.0f}"
    ds.PixelData = stored.tobytes()
    if jpeg2000:
        ds.compress(JPEG2000Lossless, stored, encoding_plugin="pylibjpeg")
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _draw_and_write(job: dict) -> dict:
    cxr = generate_cxr(job["seed"], job["pneumonia"], size=job["size"])
    rng = np.random.default_rng(job["seed"] + 7919)
    modality = "CR" if rng.random() < 0.5 else "DX"
    photometric = "MONOCHROME1" if (modality == "CR" and rng.random() < 0.8) or rng.random() < 0.2 else "MONOCHROME2"
    bits = int(rng.choice([12, 14, 15]))
    rescale = (2.0, -50.0) if rng.random() < 0.3 else None  # value = 2 * stored - 50
    jpeg2000 = bool(rng.random() < job["jpeg2000_fraction"])
    write_cxr_dicom(job["path"], cxr, modality, photometric, bits, rescale, jpeg2000, patient_id=job["id"].upper())
    return {
        "file": job["rel"],
        "split": job["split"],
        "label": CLASS_NAMES[int(job["pneumonia"])],
        "modality": modality,
        "photometric": photometric,
        "bits_stored": bits,
        "rescale": "" if rescale is None else f"{rescale[0]:g},{rescale[1]:g}",
        "transfer_syntax": "JPEG2000Lossless" if jpeg2000 else "ExplicitVRLittleEndian",
        "seed": job["seed"],
        "boxes": json.dumps(cxr.boxes),
    }


def generate_cxr_dataset(
    out_dir: str | os.PathLike,
    n_train: int = 600,
    n_val: int = 100,
    n_test: int = 300,
    seed: int = 0,
    size: int = 512,
    pneumonia_fraction: float = 0.5,
    jpeg2000_fraction: float = 0.25,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Generate a dataset of synthetic chest radiographs in the ``{split}/{NORMAL,PNEUMONIA}/*.dcm`` layout.

    Args:
        out_dir: destination (created; written atomically as a whole).
        n_train: training images.
        n_val: validation images.
        n_test: held-out test images.
        seed: dataset seed (image ``i`` is drawn from ``seed * 100003 + i``).
        size: rows and columns of each image.
        pneumonia_fraction: share of images with consolidation (exact per split, rounded).
        jpeg2000_fraction: share of files compressed with JPEG 2000 lossless.
        workers: processes.
        progress: show a progress bar.

    Returns:
        ``out_dir``.
    """
    if min(n_train, n_val, n_test) < 0 or n_train + n_val + n_test == 0:
        raise ValueError(f"need a positive number of images, got {n_train}, {n_val}, {n_test}")
    if not 0 <= pneumonia_fraction <= 1:
        raise ValueError(f"pneumonia_fraction must be in [0, 1], got {pneumonia_fraction}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    jobs, index = [], 0
    with atomic_path(out) as tmp:
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            labels = np.zeros(n, dtype=bool)
            labels[: int(round(n * pneumonia_fraction))] = True
            rng.shuffle(labels)
            for has in labels:
                index += 1
                name = f"cxr_{index:05d}"
                rel = f"{split}/{CLASS_NAMES[int(has)]}/{name}.dcm"
                jobs.append(
                    {
                        "seed": int(seed) * 100003 + index,
                        "pneumonia": bool(has),
                        "size": size,
                        "path": str(tmp / rel),
                        "rel": rel,
                        "split": split,
                        "id": name,
                        "jpeg2000_fraction": jpeg2000_fraction,
                    }
                )
        for split in ("train", "val", "test"):
            for cls in CLASS_NAMES:
                (tmp / split / cls).mkdir(parents=True, exist_ok=True)
        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        try:
            done = pool.map(_draw_and_write, jobs, chunksize=8) if pool else map(_draw_and_write, jobs)
            rows = list(tqdm(done, total=len(jobs), desc="generate cxr", disable=not progress))
        finally:
            if pool:
                pool.shutdown()
        with open(tmp / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return out

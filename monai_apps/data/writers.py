"""Writers for the dataset layouts users already have: Decathlon, TotalSegmentator subject folders, DICOM series.

Every writer is atomic: a file is written under a temporary name in its destination folder and renamed when
complete, and a DICOM series is written to a temporary folder that is renamed as a whole, so an interrupted run
leaves no half-written output.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "atomic_path",
    "write_nifti",
    "write_json",
    "write_msd_case",
    "write_msd_dataset_json",
    "write_totalsegmentator_subject",
    "write_dicom_series",
    "MSD_LIVER_LABELS",
]

#: label names of the Medical Segmentation Decathlon Task03_Liver ``dataset.json``.
MSD_LIVER_LABELS = {"0": "background", "1": "liver", "2": "cancer"}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``), so writers that choose a format by the file
    name still do the right thing. On an exception the temporary file or folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if path.is_dir() and tmp_path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()
        raise


def write_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write a NIfTI-1 file atomically with ``affine`` as both sform and qform (scanner space, millimetres).

    Args:
        path: destination, ``.nii`` or ``.nii.gz``.
        array: the voxel data, written with its own dtype.
        affine: 4x4 voxel-to-RAS affine.
    """
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return Path(path)


def write_json(path: str | os.PathLike, obj: object) -> Path:
    """Write JSON atomically, indented."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
    return Path(path)


def write_msd_case(
    root: str | os.PathLike, case_id: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray, test: bool = False
) -> tuple[Path, Path]:
    """Write one case of a Medical Segmentation Decathlon folder.

    Training cases go to ``imagesTr/`` and ``labelsTr/``; held-out cases to ``imagesTs/`` as in the Decathlon,
    and their labels to ``labelsTs/`` (where nnU-Net keeps held-out labels), so held-out evaluation needs no other
    layout. Files are ``<case_id>.nii.gz``.
    """
    sub = "Ts" if test else "Tr"
    label_path = write_nifti(Path(root) / f"labels{sub}" / f"{case_id}.nii.gz", label, affine)
    image_path = write_nifti(Path(root) / f"images{sub}" / f"{case_id}.nii.gz", image, affine)
    return image_path, label_path


def write_msd_dataset_json(
    root: str | os.PathLike,
    training_ids: Sequence[str],
    test_ids: Sequence[str] = (),
    name: str = "LiverTumour",
    description: str = "Synthetic portal-venous abdominal CT with liver and liver tumour labels",
    labels: dict[str, str] | None = None,
    modality: dict[str, str] | None = None,
) -> Path:
    """Write the Decathlon ``dataset.json`` index of a task folder.

    Args:
        root: the task folder, for example ``data/Task03_Liver``.
        training_ids: case ids in ``imagesTr``/``labelsTr``.
        test_ids: case ids in ``imagesTs``.
        name: ``name`` field.
        description: ``description`` field.
        labels: label id to name (default Task03's background / liver / cancer).
        modality: channel to modality (default ``{"0": "CT"}``).
    """
    dataset = {
        "name": name,
        "description": description,
        "reference": "monai_apps synthetic generator (no patient data)",
        "licence": "CC-BY-4.0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": modality or {"0": "CT"},
        "labels": labels or MSD_LIVER_LABELS,
        "numTraining": len(training_ids),
        "numTest": len(test_ids),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in training_ids],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test_ids],
    }
    return write_json(Path(root) / "dataset.json", dataset)


def write_totalsegmentator_subject(
    folder: str | os.PathLike,
    image: np.ndarray,
    affine: np.ndarray,
    masks: dict[str, np.ndarray],
    image_name: str = "ct.nii.gz",
) -> Path:
    """Write one subject as TotalSegmentator lays it out: ``ct.nii.gz`` and ``segmentations/<name>.nii.gz``.

    Args:
        folder: the subject folder, for example ``Subject_001``.
        image: int16 CT volume.
        affine: its NIfTI affine.
        masks: TotalSegmentator class name to boolean mask; each is written as uint8 0/1.
        image_name: file name of the image (``mri.nii.gz`` as in TotalSegmentator's MRI dataset).
    """
    folder = Path(folder)
    for name, mask in masks.items():
        write_nifti(folder / "segmentations" / f"{name}.nii.gz", np.asarray(mask, dtype=np.uint8), affine)
    write_nifti(folder / image_name, image, affine)
    return folder


def _lps_geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row/column direction cosines, pixel spacing and the slice-0 position in LPS from a RAS affine."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)[:3, :]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    row_dir, col_dir = lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]
    return row_dir, col_dir, spacing, lps


def write_dicom_series(
    folder: str | os.PathLike,
    image: np.ndarray,
    affine: np.ndarray,
    patient_id: str = "SYNTH0001",
    series_description: str = "Synthetic abdominal CT",
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Path:
    """Write a volume as a DICOM series, one uncompressed CT (or MR) Image Storage file per slice.

    The geometry is taken from the NIfTI affine (the first voxel axis runs along DICOM columns, the second along
    rows, the third across slices), so ITK, pydicom and MONAI's readers give back the same affine. CT pixel data are
    stored as unsigned 16-bit with ``RescaleIntercept -1024``, as most CT scanners do. With ``modality="MR"`` the
    files are MR Image Storage with MR acquisition attributes (a 3D steady-state gradient echo) and the values are
    stored as they are, without a rescale (a volume with negative values gets a ``RescaleIntercept`` equal to its
    minimum, so it still reads back unchanged). Only synthetic identifiers are written.

    Args:
        folder: the series folder to create (replaced if it exists).
        image: HU volume ``(X, Y, Z)``; values are clipped to -1024..64511 (MR: to a 16-bit unsigned range).
        affine: voxel-to-RAS affine.
        patient_id: PatientID and PatientName.
        series_description: SeriesDescription.
        modality: the Modality tag: ``CT`` (the default), ``MR`` for an MR series, another value writes a CT
            Image Storage series with that tag (a wrong-modality test input).
        study_uid: StudyInstanceUID (new if ``None``).
        series_uid: SeriesInstanceUID (new if ``None``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"a DICOM series needs a 3D volume, got shape {image.shape}")
    row_dir, col_dir, spacing, lps = _lps_geometry(affine)
    normal = np.cross(row_dir, col_dir)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    now = _dt.datetime(2026, 1, 1, 12, 0, 0)
    is_mr = modality == "MR"
    sop_class = MRImageStorage if is_mr else CTImageStorage
    if is_mr:
        mr_offset = min(int(np.floor(image.min())), 0) if image.size else 0
        stored = np.clip(np.rint(image) - mr_offset, 0, 65535).astype(np.uint16)
        low, high = (float(v) for v in np.percentile(image, [1, 99.5])) if image.size else (0.0, 1.0)
    else:
        stored = np.clip(np.rint(image) + 1024, 0, 65535).astype(np.uint16)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for k in range(image.shape[2]):
            position = lps @ np.array([0.0, 0.0, float(k), 1.0])
            sop_uid = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop_uid
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.Modality = modality
            ds.PatientName = patient_id
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = "O"
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
            ds.AccessionNumber = ""
            ds.ReferringPhysicianName = ""
            ds.StudyID = "1"
            ds.SeriesNumber = 1
            ds.InstanceNumber = k + 1
            ds.Manufacturer = "monai_apps synthetic"
            ds.SeriesDescription = series_description
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"] if is_mr else ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
            ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing, then column spacing
            ds.SliceThickness = f"{spacing[2]:.4f}"
            ds.SliceLocation = f"{float(np.dot(position, normal)):.4f}"
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = image.shape[1], image.shape[0]
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            if is_mr:
                ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SS", ""
                ds.MRAcquisitionType = "3D"
                ds.SequenceName = "bSSFP"
                ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "3.4", "1.7", 1
                ds.FlipAngle, ds.MagneticFieldStrength = "90", "1.5"
                if mr_offset:
                    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(mr_offset), "1", "US"
                ds.WindowCenter = f"{(low + high) / 2:.0f}"
                ds.WindowWidth = f"{max(high - low, 1.0):.0f}"
            else:
                ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
                ds.WindowCenter, ds.WindowWidth = "40", "400"
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            ds.save_as(tmp / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return Path(folder)

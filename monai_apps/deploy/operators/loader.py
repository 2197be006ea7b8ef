"""A DICOM study loader that names bad files and copes with anonymised series whose UIDs were blanked."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_study import DICOMStudy
from monai.deploy.exceptions import ItemNotExistsError
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator

__all__ = ["StudyLoaderOperator", "read_instance", "DicomInputError"]

logger = logging.getLogger(__name__)

#: DICOMDIR and other non-image storage classes ignored while loading
IGNORED_SOP_CLASSES = ("1.2.840.10008.1.3.10",)


class DicomInputError(ValueError):
    """A DICOM input problem; the message is one line naming the file or folder."""


def _derived_uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def _check_pixel_data(path: Path, ds) -> None:
    """An image instance must carry all its pixel data (a truncated file often parses up to where it stops)."""
    meta = getattr(ds, "file_meta", None)
    classes = [meta.get("MediaStorageSOPClassUID") if meta is not None else None, ds.get("SOPClassUID")]
    is_image = any("Image Storage" in getattr(c, "name", "") for c in classes) or "Rows" in ds
    if not is_image:
        return  # not an image (an SR, a report): nothing to check
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        raise DicomInputError(f"{path}: truncated or incomplete DICOM image (no pixel data)")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not syntax.is_compressed:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames
        expected = expected * int(ds.get("BitsAllocated", 16)) // 8
        if len(ds.PixelData) < expected:
            raise DicomInputError(f"{path}: truncated pixel data ({len(ds.PixelData)} of {expected} bytes)")


def read_instance(path: str | os.PathLike, repaired: list[str] | None = None):
    """Read one DICOM file; ``None`` if it is not DICOM. Blank UIDs of an anonymised file are filled in.

    A blank SOP Instance/Class UID is taken from the file meta (the same value by the standard). A blank Study or
    Series Instance UID (some anonymisers blank them) is replaced by a UID derived deterministically from the
    study/series attributes, so the whole series still groups together.

    Args:
        path: the file.
        repaired: if given, the names of the attributes filled in are appended to it.

    Raises:
        DicomInputError: for a file that starts as DICOM but cannot be read (truncated, corrupt).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        return None
    except Exception as err:
        raise DicomInputError(f"{path}: unreadable DICOM file ({type(err).__name__}: {err})") from err
    _check_pixel_data(path, ds)
    repaired = [] if repaired is None else repaired
    meta = getattr(ds, "file_meta", None)
    if not str(ds.get("SOPInstanceUID", "") or "") and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        repaired.append("SOPInstanceUID")
    if not str(ds.get("SOPClassUID", "") or "") and meta is not None and meta.get("MediaStorageSOPClassUID"):
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        repaired.append("SOPClassUID")
    if not str(ds.get("StudyInstanceUID", "") or ""):
        ds.StudyInstanceUID = _derived_uid(
            "study", ds.get("PatientID", ""), ds.get("StudyDate", ""), ds.get("StudyTime", ""), ds.get("StudyID", "")
        )
        repaired.append("StudyInstanceUID")
    if not str(ds.get("SeriesInstanceUID", "") or ""):
        ds.SeriesInstanceUID = _derived_uid(
            "series",
            ds.StudyInstanceUID,
            ds.get("SeriesNumber", ""),
            ds.get("SeriesDate", ""),
            ds.get("SeriesTime", ""),
            ds.get("SeriesDescription", ""),
            ds.get("Modality", ""),
            ds.get("FrameOfReferenceUID", ""),
        )
        repaired.append("SeriesInstanceUID")
    return ds


def _filled(ds):
    """The top-level, non-empty, non-pixel elements of ``ds`` (the SDK's attribute copying fails on empty IS/DS)."""
    from pydicom.dataset import Dataset

    out = Dataset()
    for elem in ds:
        if elem.tag.group != 0x7FE0 and elem.VR != "SQ" and elem.value not in (None, "", b""):
            out.add(elem)
    return out


class StudyLoaderOperator(DICOMDataLoaderOperator):
    """``DICOMDataLoaderOperator`` with one-line errors naming the bad file, and anonymised-UID repair.

    Files that are not DICOM (a README, a thumbnail) are skipped as the SDK does; a file that starts as DICOM but
    cannot be read stops the app with its name. Instances without a usable SOP Instance UID are refused, because
    the DICOM SEG must reference every source instance.

    Named output:
        dicom_study_list: list of ``DICOMStudy``.
    """

    def load_data_to_studies(self, input_path: Path):  # noqa: D102 (SDK signature)
        input_path = Path(input_path)
        if not input_path.is_dir():
            raise DicomInputError(f"{input_path}: input DICOM folder not found")
        try:
            return super().load_data_to_studies(input_path)
        except ItemNotExistsError as err:
            raise DicomInputError(f"{input_path}: no DICOM instances found") from err

    def _load_data(self, files):  # noqa: D102 (SDK signature)
        study_dict: dict[str, DICOMStudy] = {}
        series_dict: dict[str, DICOMSeries] = {}
        by_position: dict[str, dict] = {}
        skipped = 0
        repairs: dict[str, set[str]] = {}
        for file in sorted(files):
            repaired: list[str] = []
            ds = read_instance(file, repaired)
            if ds is None:
                skipped += 1
                continue
            if str(ds.get("SOPClassUID", "")) in IGNORED_SOP_CLASSES:
                continue
            if not str(ds.get("SOPInstanceUID", "") or ""):
                raise DicomInputError(f"{file}: DICOM instance without a SOP Instance UID")
            study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            repairs.setdefault(series_uid, set()).update(repaired)
            if study_uid not in study_dict:
                study_dict[study_uid] = DICOMStudy(study_uid)
                self.populate_study_attributes(study_dict[study_uid], _filled(ds))
            if series_uid not in series_dict:
                series_dict[series_uid] = DICOMSeries(series_uid)
                self.populate_series_attributes(series_dict[series_uid], _filled(ds))
                study_dict[study_uid].add_series(series_dict[series_uid])
            ipp = ds.get("ImagePositionPatient")
            key = tuple(round(float(v), 4) for v in ipp) if ipp is not None else (str(ds.SOPInstanceUID),)
            kept = by_position.setdefault(series_uid, {})
            previous = kept.get(key)
            if previous is not None:
                # the same slice position twice: keep the later acquisition, as the SDK loader does
                if int(ds.get("AcquisitionNumber", -1) or -1) <= int(previous.get("AcquisitionNumber", -1) or -1):
                    logger.info("%s: duplicate slice position %s in series %s, skipped", file, key, series_uid)
                    continue
            kept[key] = ds
        if skipped:
            logger.info("skipped %d files that are not DICOM", skipped)
        for series_uid, names in repairs.items():
            if names:
                logger.warning(
                    "series %s: blank %s (an anonymised export?): filled from the file meta or derived",
                    series_uid,
                    ", ".join(sorted(names)),
                )
        for series_uid, instances in by_position.items():
            for ds in instances.values():
                series_dict[series_uid].add_sop_instance(ds)
        return list(study_dict.values())

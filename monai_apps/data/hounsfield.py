"""Attenuation values (Hounsfield units) used by the synthetic CT generators.

Each tissue has a mean HU and a between-subject standard deviation for two acquisition phases.

Where the numbers come from:

* ``non_contrast``: medians measured inside eroded TotalSegmentator masks of the real, non-contrast abdominal CT
  ``totalsegmentator/reference_files/example_ct.nii.gz`` (see ``../shared/data/real/SOURCES.md``): liver 47,
  spleen 35, kidneys 14-20, aorta 44, inferior vena cava 42, iliopsoas 50, autochthon 20, small bowel 25,
  vertebral bodies 110-155, lung bases -780 to -856, fat -97, air -994.
* ``portal_venous``: medians measured the same way in the real portal-venous CT DICOM series
  ``example_ct_dicom`` against ``example_seg_dicom.nii.gz``: liver 93, spleen 81, aorta 153, portal vein 137,
  inferior vena cava 96, autochthon 32, T12 vertebra 179. The Medical Segmentation Decathlon Task03 (LiTS) scans
  are portal-venous, so this is the default phase of the liver-tumour cohort.
* Values that neither scan shows (kidney cortex in portal-venous phase, cortical bone, bowel gas, hypodense liver
  tumours) follow textbook ranges, for example Radiopaedia's "Hounsfield unit" article: fat -100 to -50, cortical
  bone +500 to +1900, air -1000; enhancing renal cortex 150-200 HU in the portal-venous phase; hypovascular liver
  metastases and HCC wash-out are 20-60 HU below the enhanced parenchyma.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Attenuation", "HU_TABLES", "PHASES", "hu_table"]


@dataclass(frozen=True)
class Attenuation:
    """Mean HU of a tissue and the between-subject standard deviation of that mean."""

    mean: float
    subject_sd: float = 5.0


_COMMON = {
    "air": Attenuation(-1000.0, 0.0),
    "lung": Attenuation(-830.0, 25.0),
    "subcutaneous_fat": Attenuation(-100.0, 6.0),
    "torso_fat": Attenuation(-95.0, 6.0),
    "cortical_bone": Attenuation(750.0, 80.0),
    "rib": Attenuation(450.0, 60.0),
    "disc": Attenuation(85.0, 8.0),
    "bowel_fluid": Attenuation(15.0, 6.0),
    "bowel_gas": Attenuation(-950.0, 20.0),
    "stool": Attenuation(-60.0, 20.0),
    "renal_sinus": Attenuation(-40.0, 15.0),
    "spinal_cord": Attenuation(20.0, 6.0),
    "table": Attenuation(250.0, 30.0),
}

HU_TABLES: dict[str, dict[str, Attenuation]] = {
    "non_contrast": {
        **_COMMON,
        "skeletal_muscle": Attenuation(45.0, 6.0),
        "liver": Attenuation(50.0, 6.0),
        "liver_tumor": Attenuation(25.0, 6.0),
        "spleen": Attenuation(38.0, 5.0),
        "kidney": Attenuation(28.0, 5.0),
        "blood": Attenuation(44.0, 5.0),
        "bowel_wall": Attenuation(35.0, 6.0),
        "cancellous_bone": Attenuation(140.0, 25.0),
    },
    "portal_venous": {
        **_COMMON,
        "skeletal_muscle": Attenuation(55.0, 6.0),
        "liver": Attenuation(100.0, 10.0),
        "liver_tumor": Attenuation(55.0, 10.0),
        "spleen": Attenuation(105.0, 10.0),
        "kidney": Attenuation(165.0, 15.0),
        "blood": Attenuation(150.0, 15.0),
        "bowel_wall": Attenuation(75.0, 10.0),
        "cancellous_bone": Attenuation(180.0, 30.0),
    },
}

PHASES = tuple(HU_TABLES)


def hu_table(phase: str) -> dict[str, Attenuation]:
    """Return the attenuation table of one acquisition phase.

    Args:
        phase: ``"portal_venous"`` or ``"non_contrast"``.

    Raises:
        ValueError: when ``phase`` is not a known phase.
    """
    if phase not in HU_TABLES:
        raise ValueError(f"unknown CT phase {phase!r}; expected one of {', '.join(PHASES)}")
    return HU_TABLES[phase]

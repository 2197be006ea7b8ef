"""Synthetic abdominal CT: HU per tissue, labels consistent with the image, seeds, geometry and layouts."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from monai_apps.data.hounsfield import HU_TABLES, hu_table
from monai_apps.data.scanner import gaussian_noise_gain
from monai_apps.data.synthetic_abdomen import EXTRA_IDS, STRUCTURE_IDS, generate_abdominal_ct

SHAPE = (160, 160, 40)


@pytest.fixture(scope="module")
def ct():
    return generate_abdominal_ct(seed=11, shape=SHAPE, spacing=(2.4, 2.4, 7.5), n_tumours=3, noise_sd=10.0)


def _interior(ct, name, erode=2):
    mask = ct.labels == STRUCTURE_IDS[name]
    return ndimage.binary_erosion(mask, iterations=erode) if erode else mask


@pytest.mark.parametrize(
    "tissue, low, high",
    [
        ("liver", 60, 140),  # portal-venous parenchyma, measured ~93 HU on the real portal-venous series
        ("spleen", 60, 150),
        ("aorta", 100, 200),
        ("subcutaneous_fat", -130, -70),
        ("lung_lower_lobe_left", -950, -700),
        ("autochthon_left", 25, 85),
    ],
)
def test_hu_per_tissue(ct, tissue, low, high):
    values = ct.image[_interior(ct, tissue)]
    assert values.size > 50, f"{tissue}: too few interior voxels"
    assert low <= np.median(values) <= high, f"{tissue}: median {np.median(values)} HU outside [{low}, {high}]"


def test_air_bone_and_noise(ct):
    outside = ct.image[(ct.labels == 0)][:5000]
    assert np.median(outside) < -900
    cortical = ct.image[ct.labels == STRUCTURE_IDS["vertebrae_L1"]]
    assert cortical.max() > 300, "vertebra has no bone-like voxels"
    fat = ct.image[_interior(ct, "subcutaneous_fat", erode=3)]
    assert 4 < fat.std() < 25, f"noise SD {fat.std():.1f} HU is not scanner-like for noise_sd=10"
    assert ct.image.dtype == np.int16 and ct.image.min() >= -1024 and ct.image.max() <= 3071


def test_tumours_are_hypodense_and_inside_liver(ct):
    msd = ct.msd_label()
    assert set(np.unique(msd)) <= {0, 1, 2}
    assert (msd == 2).sum() > 0, "n_tumours=3 produced no tumour voxels"
    liver_region = ndimage.binary_closing(msd > 0, iterations=2)
    assert liver_region[msd == 2].all(), "tumour voxels outside the liver"
    tumour = ct.image[ndimage.binary_erosion(msd == 2)]
    liver = ct.image[ndimage.binary_erosion(msd == 1, iterations=2)]
    if tumour.size > 20:
        assert np.median(tumour) < np.median(liver) - 15, "tumours are not hypodense"
    assert len(ct.tumours) == 3 and all(5 <= t["radius_mm"] <= 25 for t in ct.tumours)


def test_anatomy_sides(ct):
    """Liver on the patient's right, spleen on the left, in RAS world coordinates from the affine."""

    def world_x(mask):
        ijk = np.argwhere(mask).mean(axis=0)
        return (ct.affine @ np.append(ijk, 1.0))[0]

    assert world_x(ct.mask("spleen")) < 0 < world_x(ct.mask("liver"))  # RAS+: x grows towards the patient's right
    assert world_x(ct.mask("kidney_left")) < 0 < world_x(ct.mask("kidney_right"))


def test_reproducible_by_seed():
    a = generate_abdominal_ct(seed=3, shape=(64, 64, 16), spacing=(6.0, 6.0, 18.0))
    b = generate_abdominal_ct(seed=3, shape=(64, 64, 16), spacing=(6.0, 6.0, 18.0))
    c = generate_abdominal_ct(seed=4, shape=(64, 64, 16), spacing=(6.0, 6.0, 18.0))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_default_grid_is_real_world():
    ct = generate_abdominal_ct(seed=21, shape=(256, 256, 20))
    sx, sy, sz = ct.spacing
    assert 0.6 <= sx == sy <= 0.9 and 1.5 <= sz <= 5.0
    assert ct.image.shape == (256, 256, 20)
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S")  # DICOM-like storage order, a valid NIfTI affine
    assert ct.present_structures()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown CT phase"):
        hu_table("arterial")
    with pytest.raises(ValueError, match="n_tumours"):
        generate_abdominal_ct(seed=0, shape=(32, 32, 8), spacing=(10.0, 10.0, 30.0), n_tumours=-1)
    with pytest.raises(ValueError, match="too small"):
        generate_abdominal_ct(seed=0, shape=(4, 32, 8))


def test_hu_tables_cover_the_same_tissues():
    assert set(HU_TABLES["portal_venous"]) == set(HU_TABLES["non_contrast"])
    assert hu_table("portal_venous")["liver"].mean > hu_table("non_contrast")["liver"].mean


def test_noise_gain_matches_filtered_noise():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    noise = rng.standard_normal((64, 64, 64))
    sigma = (0.8, 0.8, 0.4)
    measured = gaussian_filter(noise, sigma).std()
    assert abs(measured - gaussian_noise_gain(sigma)) < 0.02


def test_extra_ids_do_not_clash_with_totalsegmentator():
    ts_ids = {v for k, v in STRUCTURE_IDS.items() if k not in EXTRA_IDS}
    assert not ts_ids & set(EXTRA_IDS.values())
    assert STRUCTURE_IDS["liver"] == 5 and STRUCTURE_IDS["spleen"] == 1 and STRUCTURE_IDS["kidney_left"] == 3


class TestLayouts:
    """Every layout reads back with MONAI's own loaders with the same voxels and geometry."""

    def test_msd(self, tmp_path):
        from monai.data import load_decathlon_datalist
        from monai.transforms import LoadImaged

        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(
            tmp_path / "Task03_Liver", n_cases=2, n_test=1, shape=(48, 48, 12), spacing=(8.0, 8.0, 25.0), progress=False
        )
        index = json.loads((out / "dataset.json").read_text())
        assert index["numTraining"] == 2 and index["numTest"] == 1
        assert index["labels"] == {"0": "background", "1": "liver", "2": "cancer"}
        items = load_decathlon_datalist(str(out / "dataset.json"), True, "training", base_dir=str(out))
        data = LoadImaged(["image", "label"], image_only=True)(items[0])
        assert data["image"].shape == data["label"].shape == (48, 48, 12)
        assert set(np.unique(np.asarray(data["label"]))) <= {0, 1, 2}
        assert (out / "labelsTs" / "liver_2.nii.gz").is_file() and (out / "imagesTs" / "liver_2.nii.gz").is_file()
        assert not list(out.rglob(".*part*")), "temporary files left behind"

    def test_totalsegmentator(self, tmp_path):
        from monai.transforms import LoadImage

        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(
            tmp_path / "ts",
            n_cases=1,
            layout="totalsegmentator",
            shape=(48, 48, 12),
            spacing=(8.0, 8.0, 25.0),
            progress=False,
        )
        subject = out / "Subject_001"
        ct = LoadImage(image_only=True)(str(subject / "ct.nii.gz"))
        liver = LoadImage(image_only=True)(str(subject / "segmentations" / "liver.nii.gz"))
        assert ct.shape == liver.shape
        assert set(np.unique(np.asarray(liver))) == {0, 1}
        np.testing.assert_allclose(np.asarray(ct.affine), np.asarray(liver.affine))
        names = {p.name.removesuffix(".nii.gz") for p in (subject / "segmentations").iterdir()}
        assert {"liver", "spleen", "kidney_left", "kidney_right", "aorta", "colon"} <= names

    def test_dicom_series_matches_nifti(self, tmp_path):
        import pydicom
        from monai.transforms import LoadImage

        from monai_apps.data.writers import write_dicom_series, write_nifti

        ct = generate_abdominal_ct(seed=2, shape=(64, 48, 10), spacing=(0.8, 0.7, 3.0))
        write_dicom_series(tmp_path / "series", ct.image, ct.affine)
        write_nifti(tmp_path / "ct.nii.gz", ct.image, ct.affine)
        files = sorted((tmp_path / "series").iterdir())
        assert len(files) == 10
        ds = pydicom.dcmread(files[0])
        assert ds.Modality == "CT" and ds.Rows == 48 and ds.Columns == 64
        assert ds.pixel_array.shape == (48, 64)
        from_dicom = LoadImage(image_only=True)(str(tmp_path / "series"))  # ITK reads the series
        from_nifti = LoadImage(image_only=True)(str(tmp_path / "ct.nii.gz"))
        np.testing.assert_array_equal(np.asarray(from_dicom), np.asarray(from_nifti))
        np.testing.assert_allclose(np.asarray(from_dicom.affine), np.asarray(from_nifti.affine), atol=1e-3)

    def test_dicom_layout_with_labels(self, tmp_path):
        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(
            tmp_path / "dcm", n_cases=1, layout="dicom", shape=(48, 48, 6), spacing=(8.0, 8.0, 40.0), progress=False
        )
        manifest = json.loads((out / "cohort.json").read_text())
        assert manifest["cases"][0]["image"] == "./case_000"
        assert len(list((out / "case_000").iterdir())) == 6
        assert nib.load(out / "labels" / "case_000.nii.gz").shape == (48, 48, 6)

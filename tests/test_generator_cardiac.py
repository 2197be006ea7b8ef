"""Synthetic cardiac MRI: bSSFP contrast, Rician noise, bias field, the left atrium, seeds, geometry, layouts."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from monai_apps.data.canvas import Canvas
from monai_apps.data.synthetic_cardiac import (
    CARDIAC_IDS,
    LEFT_ATRIUM,
    MR_SIGNAL,
    bias_field,
    generate_cardiac_mri,
)


@pytest.fixture(scope="module")
def mr():
    return generate_cardiac_mri(seed=5, shape=(128, 128, 48), spacing=(3.0, 3.0, 3.0), noise_sd=0.05)


def _median(mr, name, erode=1):
    mask = mr.labels == CARDIAC_IDS[name]
    if erode:
        mask = ndimage.binary_erosion(mask, iterations=erode)
    assert mask.sum() > 20, f"{name}: too few interior voxels"
    return float(np.median(mr.image[mask]))


def _lps(mr, mask):
    ras = mr.affine @ np.append(np.argwhere(mask).mean(axis=0), 1.0)
    return np.array([-ras[0], -ras[1], ras[2]])


def test_bssfp_contrast(mr):
    blood = _median(mr, "heart_ventricle_left")
    myocardium = _median(mr, "heart_myocardium")
    assert 0.75 * mr.blood_signal < blood < 1.35 * mr.blood_signal, "blood pool far from its nominal signal"
    assert blood > 1.8 * myocardium, f"blood {blood} is not bright against myocardium {myocardium}"
    assert _median(mr, "subcutaneous_fat") > 1.5 * myocardium, "fat is not bright"
    assert _median(mr, "lung_left") < 0.2 * blood, "lungs are not dark"
    assert _median(mr, "skeletal_muscle") < 0.6 * blood
    assert _median(mr, "heart_atrium_left") > 1.8 * myocardium, "the left atrium is not bright blood"
    assert mr.image.dtype == np.int16 and mr.image.min() >= 0


def test_rician_background(mr):
    """Air holds only noise: the magnitude of complex Gaussian noise is Rayleigh-distributed."""
    air = mr.image[:, :8, :].astype(np.float64)  # the rows in front of the patient
    assert (mr.labels[:, :8, :] == 0).all()
    sigma = mr.noise_sd * mr.blood_signal
    assert abs(air.mean() - sigma * np.sqrt(np.pi / 2)) < 0.1 * sigma
    assert 1.75 < air.mean() / air.std() < 2.1, "background is not Rayleigh (mean/SD 1.91)"


def test_bias_field_is_smooth_and_brighter_near_the_coils():
    canvas = Canvas((80, 80, 20), (5.0, 5.0, 5.0), (-200.0, -200.0, -50.0))
    field = bias_field(np.random.default_rng(0), canvas, y_front=-120.0, y_back=110.0, strength=0.5)
    assert field.shape == canvas.shape and field.dtype == np.float32
    assert abs(field.mean() - 1.0) < 1e-4 and 0.4 < field.min() and field.max() < 2.5
    y = canvas.axes[1]
    front, centre = np.argmin(abs(y + 120)), np.argmin(abs(y))
    assert field[:, front].mean() > 1.2 * field[:, centre].mean(), "no brightening near the anterior coil"
    assert np.abs(np.diff(field, axis=0)).max() < 0.05 and np.abs(np.diff(field, axis=1)).max() < 0.05


def test_left_atrium(mr):
    la = mr.msd_label().astype(bool)
    np.testing.assert_array_equal(la, mr.mask("left_atrium"))
    assert set(np.unique(mr.msd_label())) == {0, 1}
    assert ndimage.label(la)[1] == 1, "the left atrium is not one connected region"
    volume_ml = la.sum() * np.prod(mr.spacing) / 1000
    assert 30 < volume_ml < 200, f"left atrium {volume_ml:.0f} mL"
    ostia, n = ndimage.label(mr.mask("pulmonary_vein_ostium"))
    assert n in (3, 4), f"{n} pulmonary-vein ostia"
    body = ndimage.binary_dilation(mr.mask("heart_atrium_left"), iterations=2)
    assert all((body & (ostia == i)).any() for i in range(1, n + 1)), "an ostium is detached from the atrium"
    assert mr.mask("atrial_appendage_left").any()
    # inside the heart: within the chambers' bounding box, behind the left ventricle, touching it
    heart = np.isin(
        mr.labels,
        [
            CARDIAC_IDS[n]
            for n in ("heart_myocardium", "heart_ventricle_left", "heart_ventricle_right", "heart_atrium_right")
        ],
    )
    lo, hi = np.argwhere(heart).min(axis=0), np.argwhere(heart).max(axis=0)
    centre = np.argwhere(mr.mask("heart_atrium_left")).mean(axis=0)
    assert (lo <= centre).all() and (centre <= hi).all(), "the atrium lies outside the heart"
    lv = mr.mask("heart_ventricle_left")
    assert _lps(mr, mr.mask("heart_atrium_left"))[1] > _lps(mr, lv)[1] + 15, "atrium is not behind the ventricle"
    near_lv = ndimage.binary_dilation(lv | mr.mask("heart_myocardium"), iterations=2)
    assert (near_lv & mr.mask("heart_atrium_left")).any(), "atrium does not meet the left heart"
    assert not (la & np.isin(mr.labels, [CARDIAC_IDS["lung_left"], CARDIAC_IDS["lung_right"]])).any()


def test_only_output_ids_remain(mr):
    assert set(np.unique(mr.labels).tolist()) <= {0, *CARDIAC_IDS.values()}
    assert {"heart_atrium_left", "heart_ventricle_left", "heart_myocardium", "aorta", "lung_left"} <= set(
        mr.present_structures()
    )


def test_anatomy_sides(mr):
    assert _lps(mr, mr.mask("lung_left"))[0] > 30 > -30 > _lps(mr, mr.mask("lung_right"))[0]
    assert _lps(mr, mr.mask("heart_ventricle_left"))[0] > _lps(mr, mr.mask("heart_atrium_right"))[0]
    assert _lps(mr, mr.mask("heart_ventricle_right"))[1] < _lps(mr, mr.mask("heart_ventricle_left"))[1]


def test_reproducible_by_seed():
    kw = dict(shape=(48, 48, 16), spacing=(6.0, 6.0, 6.0))
    a, b, c = generate_cardiac_mri(3, **kw), generate_cardiac_mri(3, **kw), generate_cardiac_mri(4, **kw)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_default_grid_is_task02_like():
    mr = generate_cardiac_mri(seed=2, shape=(48, 48, None))
    assert mr.spacing == pytest.approx((1.25, 1.25, 1.37))
    assert mr.image.shape[:2] == (48, 48) and 90 <= mr.image.shape[2] <= 130
    assert nib.aff2axcodes(mr.affine) == ("L", "P", "S")
    assert mr.mask("heart_atrium_left").any(), "the default field of view misses the left atrium"


def test_signal_table_follows_bssfp_contrast():
    s = {k: v.mean for k, v in MR_SIGNAL.items()}
    assert s["blood"] > 2 * s["myocardium"] and s["subcutaneous_fat"] > 2 * s["skeletal_muscle"]
    assert s["lung"] < 0.1 * s["blood"] and s["air"] == 0.0
    assert set(LEFT_ATRIUM) <= set(CARDIAC_IDS) and len(set(CARDIAC_IDS.values())) == len(CARDIAC_IDS)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(noise_sd=-0.1), "noise_sd"), (dict(shape=(4, 32, 8)), "too small"), (dict(shape=(32, 32, 0)), "too small")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_cardiac_mri(seed=0, **{"shape": (32, 32, 8), "spacing": (10.0, 10.0, 10.0), **kwargs})


class TestLayouts:
    KW = dict(
        n_cases=2, n_test=1, seed=3, anatomy="cardiac", shape=(48, 48, 12), spacing=(8.0, 8.0, 12.0), progress=False
    )

    def test_msd(self, tmp_path):
        from monai.data import load_decathlon_datalist
        from monai.transforms import LoadImaged

        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(tmp_path / "Task02_Heart", **self.KW)
        index = json.loads((out / "dataset.json").read_text())
        assert index["modality"] == {"0": "MRI"} and index["labels"] == {"0": "background", "1": "left atrium"}
        items = load_decathlon_datalist(str(out / "dataset.json"), True, "training", base_dir=str(out))
        assert [p["label"].rsplit("/", 1)[-1] for p in items] == ["la_001.nii.gz", "la_002.nii.gz"]
        data = LoadImaged(["image", "label"], image_only=True)(items[1])
        assert data["image"].shape == data["label"].shape == (48, 48, 12)
        assert set(np.unique(np.asarray(data["label"]))) == {0, 1}
        assert (out / "imagesTs" / "la_003.nii.gz").is_file()
        cases = json.loads((out / "cohort.json").read_text())["cases"]
        assert "blood_signal" in cases[0] and "phase" not in cases[0]

    def test_totalsegmentator_mri(self, tmp_path):
        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(tmp_path / "ts", layout="totalsegmentator", **{**self.KW, "n_cases": 1, "n_test": 0})
        subject = out / "Subject_001"
        assert (subject / "mri.nii.gz").is_file() and not (subject / "ct.nii.gz").exists()
        la = nib.load(subject / "segmentations" / "heart_atrium_left.nii.gz")
        assert la.shape == (48, 48, 12) and np.asarray(la.dataobj).max() == 1

    def test_dicom_mr_series_matches_nifti(self, tmp_path):
        import pydicom
        from monai.transforms import LoadImage

        from monai_apps.data.writers import write_dicom_series, write_nifti

        mr = generate_cardiac_mri(seed=1, shape=(40, 32, 10), spacing=(1.25, 1.4, 1.37))
        write_dicom_series(tmp_path / "series", mr.image, mr.affine, modality="MR")
        write_nifti(tmp_path / "mr.nii.gz", mr.image, mr.affine)
        files = sorted((tmp_path / "series").iterdir())
        ds = pydicom.dcmread(files[0])
        assert ds.Modality == "MR" and ds.SOPClassUID == pydicom.uid.MRImageStorage
        assert "RescaleIntercept" not in ds and ds.MRAcquisitionType == "3D" and (ds.Rows, ds.Columns) == (32, 40)
        np.testing.assert_array_equal(ds.pixel_array, mr.image[:, :, 0].T)
        from_dicom = LoadImage(image_only=True)(str(tmp_path / "series"))
        from_nifti = LoadImage(image_only=True)(str(tmp_path / "mr.nii.gz"))
        np.testing.assert_array_equal(np.asarray(from_dicom), np.asarray(from_nifti))
        np.testing.assert_allclose(np.asarray(from_dicom.affine), np.asarray(from_nifti.affine), atol=1e-3)

    def test_dicom_mr_with_negative_values_reads_back(self, tmp_path):
        from monai.transforms import LoadImage

        from monai_apps.data.writers import write_dicom_series

        image = np.arange(-50, 16 * 16 * 3 - 50, dtype=np.int16).reshape(16, 16, 3)
        affine = np.diag([-2.0, -2.0, 3.0, 1.0])
        write_dicom_series(tmp_path / "neg", image, affine, modality="MR")
        np.testing.assert_array_equal(np.asarray(LoadImage(image_only=True)(str(tmp_path / "neg"))), image)

    def test_dicom_layout_and_bad_options(self, tmp_path):
        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(tmp_path / "dcm", layout="dicom", **{**self.KW, "n_cases": 1, "n_test": 0})
        assert len(list((out / "case_000").iterdir())) == 12
        assert nib.load(out / "labels" / "case_000.nii.gz").shape == (48, 48, 12)
        with pytest.raises(ValueError, match="do not apply to the cardiac"):
            generate_cohort(tmp_path / "bad", anatomy="cardiac", n_tumours=2, progress=False)
        with pytest.raises(ValueError, match="unknown anatomy"):
            generate_cohort(tmp_path / "bad", anatomy="brain", progress=False)
        assert not (tmp_path / "bad").exists()


def test_cli_generate_cardiac(tmp_path):
    from monai_apps.cli import main

    out = tmp_path / "heart"
    args = ["generate", "--out", str(out), "--anatomy", "cardiac", "--n_cases", "1", "--shape", "[32,32,8]"]
    assert main([*args, "--spacing", "[10.0,10.0,12.0]"]) == 0
    assert nib.load(out / "labelsTr" / "la_001.nii.gz").shape == (32, 32, 8)

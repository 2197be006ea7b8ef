"""Synthetic head CT: HU per tissue (grounded on the real head CT), metastases, geometry, seeds, cohort layout."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from monai_apps.data.synthetic_head import HEAD_IDS, generate_head_cohort, generate_head_ct, read_labels_csv

SPACING = (1.5, 1.5, 5.0)
SHAPE = (160, 160, None)


@pytest.fixture(scope="module")
def positive():
    return generate_head_ct(seed=21, shape=SHAPE, spacing=SPACING, n_metastases=3, noise_sd=6.0)


@pytest.fixture(scope="module")
def negative():
    return generate_head_ct(seed=22, shape=SHAPE, spacing=SPACING, n_metastases=0, noise_sd=6.0)


def _interior(ct, name, erode=1):
    mask = ct.labels == HEAD_IDS[name]
    structure = np.zeros((3, 3, 3), bool)
    structure[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_erosion(mask, structure=structure, iterations=erode) if erode else mask


@pytest.mark.parametrize(
    "tissue, low, high",
    [
        ("brain", 28, 42),  # grey matter: 36 HU measured on the real head CT
        ("white_matter", 17, 31),  # 23-25 HU measured
        ("ventricle", -8, 12),  # lateral ventricles: 1 HU measured
        ("skull", 450, 1300),  # 866 HU median measured (cortical + diploe)
        ("scalp", 20, 55),
    ],
)
def test_hu_per_tissue(negative, tissue, low, high):
    vault = np.zeros(negative.image.shape, bool)
    vault[:, :, negative.image.shape[2] // 2 :] = True  # above the skull base
    values = negative.image[_interior(negative, tissue, erode=0 if tissue == "skull" else 1) & vault]
    assert values.size > 30, f"{tissue}: too few interior voxels"
    assert low <= np.median(values) <= high, f"{tissue}: median {np.median(values)} HU outside [{low}, {high}]"


def test_air_noise_and_dtype(negative):
    assert negative.image.dtype == np.int16
    assert negative.image.min() >= -1024 and negative.image.max() <= 3071
    assert np.median(negative.image[negative.labels == 0]) < -900
    white = negative.image[_interior(negative, "white_matter", erode=3)].astype(np.float64)
    assert 3 < white.std() < 12, f"noise SD {white.std():.1f} HU is not like the 6.8 HU of the real head CT"


def test_metastases_are_dense_inside_the_brain(positive):
    assert positive.label == 1 and 1 <= len(positive.metastases) <= 3
    met = positive.labels == HEAD_IDS["metastasis"]
    assert met.sum() == sum(m["voxels"] for m in positive.metastases)
    # inside the cranial vault: every metastasis voxel is enclosed by parenchyma, CSF or lesion, never bone/scalp
    near = ndimage.binary_dilation(met, iterations=1) & ~met
    neighbours = set(np.unique(positive.labels[near]).tolist())
    assert not neighbours & {HEAD_IDS["skull"], HEAD_IDS["scalp"], 0}, neighbours
    white = np.median(positive.image[_interior(positive, "white_matter", erode=2)])
    for m in positive.metastases:
        assert 5.0 <= m["diameter_mm"] <= 30.0
        assert m["kind"] in ("hyperdense", "ring")
        assert m["slices"] == sorted(m["slices"]) and m["slices"], m
        if m["kind"] == "hyperdense":
            assert 52 <= m["hu"] <= 75 and m["hu"] > white + 20


def test_ring_metastasis_has_a_dense_rim_and_a_dark_core():
    ct = next(
        c
        for seed in range(40)
        for c in [generate_head_ct(seed, shape=SHAPE, spacing=(1.0, 1.0, 2.0), n_metastases=3, noise_sd=0.0)]
        if any(m["kind"] == "ring" and m["diameter_mm"] > 16 for m in c.metastases)
    )
    m = next(m for m in ct.metastases if m["kind"] == "ring" and m["diameter_mm"] > 16)
    centre = (np.asarray(m["center_mm"]) - ct.affine[:3, 3] * [-1, -1, 1]) / np.array(ct.spacing)
    i, j, k = np.rint(centre).astype(int)
    core = ct.image[i - 1 : i + 2, j - 1 : j + 2, k].mean()
    rim = ct.image[ct.labels == HEAD_IDS["metastasis"]].astype(float)
    assert core < 30, f"necrotic core {core} HU"
    assert np.percentile(rim, 90) > 55, "no enhancing rim"


def test_negative_has_no_lesion_but_has_look_alikes(negative):
    assert negative.label == 0 and negative.metastases == []
    assert not (negative.labels == HEAD_IDS["metastasis"]).any()
    assert (negative.labels == HEAD_IDS["falx"]).any(), "the hyperdense falx is part of every scan"


def test_same_seed_same_scan_and_geometry():
    a = generate_head_ct(5, shape=(96, 96, None), spacing=(2.4, 2.4, 5.0))
    b = generate_head_ct(5, shape=(96, 96, None), spacing=(2.4, 2.4, 5.0))
    c = generate_head_ct(6, shape=(96, 96, None), spacing=(2.4, 2.4, 5.0))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.metastases == b.metastases
    assert not np.array_equal(a.image[:, :, : min(a.image.shape[2], c.image.shape[2])], c.image[:, :, :1] * 0 + 1)
    np.testing.assert_allclose(a.spacing, (2.4, 2.4, 5.0))
    # the head is painted in mm: the brain volume does not depend on the grid
    fine = generate_head_ct(5, shape=(192, 192, None), spacing=(1.2, 1.2, 2.5))
    vol = [ct.mask("brain").sum() * np.prod(ct.spacing) for ct in (a, fine)]
    assert abs(vol[0] - vol[1]) / vol[1] < 0.08, vol
    assert 900e3 < vol[1] < 1700e3, f"brain volume {vol[1] / 1e3:.0f} mL is not adult-like"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_metastases": 4}, "0 to 3"),
        ({"spacing": (1.0, -1.0, 5.0)}, "positive"),
        ({"shape": (64, 64)}, "3 entries"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_head_ct(0, **kwargs)


def test_cohort_layout_labels_and_dicom(tmp_path):
    out = generate_head_cohort(
        tmp_path / "cohort",
        n_patients=4,
        n_test=2,
        seed=1,
        shape=(48, 48, None),
        spacing=(4.5, 4.5, 10.0),
        progress=False,
    )
    labels = read_labels_csv(out / "labels.csv")
    test = read_labels_csv(out / "labels_test.csv")
    assert list(labels) == ["HEAD0001", "HEAD0002", "HEAD0003", "HEAD0004"] and list(test) == ["HEAD0005", "HEAD0006"]
    assert sum(labels.values()) == 2 and sum(test.values()) == 1, "positive_fraction 0.5 is exact per set"
    manifest = json.loads((out / "cohort.json").read_text())
    with open(out / "lesions.csv") as f:
        lesions = list(csv.DictReader(f))
    n_lesions = {p["patient_id"]: len(p["metastases"]) for p in manifest["patients"]}
    for pid, label in {**labels, **test}.items():
        assert (n_lesions[pid] > 0) == bool(label)
        assert sum(r["patient_id"] == pid for r in lesions) == n_lesions[pid]
    files = sorted((out / "HEAD0001").glob("*.dcm"))
    first, last = pydicom.dcmread(files[0]), pydicom.dcmread(files[-1])
    assert first.Modality == "CT" and first.PatientID == "HEAD0001" and (first.Rows, first.Columns) == (48, 48)
    assert float(last.ImagePositionPatient[2]) - float(first.ImagePositionPatient[2]) == pytest.approx(
        10.0 * (len(files) - 1), abs=1e-3
    )
    assert not list(out.glob(".*")), "temporary files left behind"


def test_cohort_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least one patient"):
        generate_head_cohort(tmp_path / "x", n_patients=0, n_test=0, progress=False)
    with pytest.raises(ValueError, match="positive_fraction"):
        generate_head_cohort(tmp_path / "x", n_patients=2, positive_fraction=1.5, progress=False)


@pytest.mark.real
def test_generated_hu_matches_the_real_head_ct(real_dir, negative):
    """Medians of brain, CSF and skull of the generator against the real InVesalius head CT (same measurement)."""
    import nibabel as nib

    real = np.asarray(nib.load(str(real_dir / "invesalius" / "Cranium_ct.nii.gz")).dataobj, dtype=np.float32)

    def measure(hu, spacing):
        smooth = ndimage.median_filter(hu, size=(5, 5, 3))
        inside = (hu > -50) & (hu < 100)
        core = ndimage.binary_erosion(inside, iterations=3)
        lab, _ = ndimage.label(core)
        brain = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
        parenchyma = hu[brain & (smooth > 15)]
        csf = hu[brain & (smooth < 10)]
        bone = hu[ndimage.binary_dilation(brain, iterations=int(10 / spacing)) & (hu > 300)]
        return np.median(parenchyma), np.median(csf), np.median(bone)

    real_values = measure(real[:, :, 45:95], 0.957)
    synth_values = measure(negative.image.astype(np.float32), SPACING[0])
    for name, r, s, tol in zip(("parenchyma", "CSF", "skull"), real_values, synth_values, (8, 8, 250), strict=True):
        assert abs(r - s) <= tol, f"{name}: generated {s:.0f} HU vs real {r:.0f} HU"

"""Synthetic chest CT: HU per tissue, tumours inside the lungs, lobes and sides, seeds, geometry, layouts, CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from monai_apps.data.synthetic_chest import (
    CHEST_HU,
    EXTRA_IDS,
    STRUCTURE_IDS,
    TUMOR,
    generate_chest_ct,
)
from monai_apps.data.thorax import LOBE_IDS, LOBES

GRID = dict(shape=(160, 160, 48), spacing=(2.4, 2.4, 6.0))


@pytest.fixture(scope="module")
def ct():
    return generate_chest_ct(seed=11, n_tumours=3, noise_sd=10.0, phase="non_contrast", **GRID)


@pytest.fixture(scope="module")
def ct_contrast():
    return generate_chest_ct(seed=11, n_tumours=3, noise_sd=10.0, phase="contrast", **GRID)


def _interior(ct, name, erode=1):
    mask = ct.labels == STRUCTURE_IDS[name]
    return ndimage.binary_erosion(mask, iterations=erode) if erode else mask


def _lps(ct, mask):
    """Mean LPS position (mm) of a mask, from the NIfTI (RAS) affine."""
    ras = ct.affine @ np.append(np.argwhere(mask).mean(axis=0), 1.0)
    return np.array([-ras[0], -ras[1], ras[2]])


@pytest.mark.parametrize(
    "tissue, low, high",
    [
        ("lung_upper_lobe_left", -900, -760),  # measured -868 / -833 HU on the real chest CTs lung1 / lung2
        ("lung_lower_lobe_right", -900, -760),
        ("subcutaneous_fat", -130, -85),  # measured -110 / -104
        ("autochthon_left", 25, 70),  # soft tissue measured 43 / 46
        ("heart", 25, 65),  # non-contrast blood pool measured 44-45
        ("aorta", 25, 65),
        ("liver", 25, 75),
    ],
)
def test_hu_per_tissue(ct, tissue, low, high):
    values = ct.image[_interior(ct, tissue)]
    assert values.size > 50, f"{tissue}: too few interior voxels"
    assert low <= np.median(values) <= high, f"{tissue}: median {np.median(values)} HU outside [{low}, {high}]"


def test_air_bone_and_noise(ct):
    assert ct.image.dtype == np.int16 and ct.image.min() >= -1024 and ct.image.max() <= 3071
    assert np.median(ct.image[ct.labels == 0][:5000]) < -900
    trachea = ct.image[ct.labels == STRUCTURE_IDS["trachea"]]
    assert np.percentile(trachea, 10) < -900, "trachea has no air lumen"
    bone = ct.image[np.isin(ct.labels, [STRUCTURE_IDS[f"vertebrae_T{i}"] for i in range(1, 13)])]
    assert bone.max() > 400 and 120 < np.median(bone) < 400
    ribs = [n for n in ct.present_structures() if n.startswith("rib_")]
    assert sum(n.startswith("rib_left") for n in ribs) >= 9 and sum(n.startswith("rib_right") for n in ribs) >= 9
    fat = ct.image[_interior(ct, "subcutaneous_fat", erode=3)]
    assert 4 < fat.std() < 25, f"noise SD {fat.std():.1f} HU is not scanner-like for noise_sd=10"


def test_contrast_phase_changes_blood_only(ct, ct_contrast):
    np.testing.assert_array_equal(ct.labels, ct_contrast.labels)  # the phase changes intensities, not anatomy
    for name in ("heart", "aorta", "pulmonary_artery"):
        plain = np.median(ct.image[_interior(ct, name)])
        enhanced = np.median(ct_contrast.image[_interior(ct_contrast, name)])
        assert enhanced > 120 and enhanced > plain + 80, f"{name}: {plain} -> {enhanced} HU"
    for name in ("subcutaneous_fat", "lung_upper_lobe_left"):
        assert abs(np.median(ct.image[_interior(ct, name)]) - np.median(ct_contrast.image[_interior(ct, name)])) < 5
    assert ct.phase == "non_contrast" and ct_contrast.phase == "contrast"
    assert CHEST_HU["contrast"]["blood"].mean > CHEST_HU["non_contrast"]["blood"].mean + 100


def test_tumours_inside_lungs_and_hyperdense(ct):
    tumour = ct.labels == TUMOR
    assert len(ct.tumours) == 3 and tumour.sum() == sum(t["voxels"] for t in ct.tumours)
    assert set(np.unique(ct.tumour_lobes[1]).tolist()) <= set(LOBE_IDS), "tumour voxels outside the lobes"
    assert np.array_equal(np.sort(ct.tumour_lobes[0]), np.flatnonzero(tumour))
    assert ct.mask("lungs")[tumour].all(), "a lobe mask does not cover its tumour voxels"
    lungs_only = ct.mask("lungs") & ~tumour
    lung_hu = np.median(ct.image[lungs_only])
    components, n = ndimage.label(tumour)
    for i in range(1, n + 1):
        blob = components == i
        shell = ndimage.binary_dilation(blob) & ~blob
        assert not (ct.labels[shell] == 0).any(), "a tumour touches the air outside the body"
        assert np.isin(ct.labels[shell], LOBE_IDS).mean() >= 0.4, "a tumour is not surrounded by lung"
        assert np.median(ct.image[blob]) > lung_hu + 150, "a tumour is not denser than the lung around it"
    assert ct.msd_label().dtype == np.uint8 and set(np.unique(ct.msd_label())) == {0, 1}


def test_part_solid_core_and_ground_glass():
    ct = generate_chest_ct(
        seed=1, shape=(128, 128, 48), spacing=(1.0, 1.0, 1.5), n_tumours=2, noise_sd=10.0, tumour_diameter_mm=(20, 28)
    )
    kinds = {t["kind"]: t for t in ct.tumours}
    assert set(kinds) == {"solid", "part_solid"}
    ijk = np.argwhere(ct.labels == TUMOR)
    lps = ((ct.affine[:3, :3] @ ijk.T).T + ct.affine[:3, 3]) * np.array([-1.0, -1.0, 1.0])
    values = ct.image[tuple(ijk.T)]
    part = kinds["part_solid"]
    dist = np.linalg.norm(lps - part["center_lps_mm"], axis=1)
    core_r = part["core_fraction"] * part["diameter_mm"] / 2
    core = values[dist < 0.5 * core_r]
    rim = values[(dist > core_r + 3.0) & (dist < part["diameter_mm"] / 2)]
    assert core.size > 10 and rim.size > 50
    assert np.median(core) > -150, f"part-solid core median {np.median(core)} HU is not solid"
    assert -750 < np.median(rim) < -350, f"ground-glass halo median {np.median(rim)} HU"
    solid = kinds["solid"]
    inner = values[np.linalg.norm(lps - solid["center_lps_mm"], axis=1) < solid["diameter_mm"] / 4]
    assert np.median(inner) > -50


def test_smallest_nodules_are_5mm_and_visible():
    ct = generate_chest_ct(
        seed=0, shape=(192, 192, 64), spacing=(0.9, 0.9, 1.25), n_tumours=3, noise_sd=10.0, tumour_diameter_mm=(5, 5)
    )
    components, n = ndimage.label(ct.labels == TUMOR)
    assert n == 3
    lung = np.median(ct.image[ct.mask("lungs") & (ct.labels != TUMOR)])
    for i in range(1, n + 1):
        blob = components == i
        diameter = (6 * blob.sum() * np.prod(ct.spacing) / np.pi) ** (1 / 3)
        assert 4.6 <= diameter <= 7.0, f"nodule {i}: equivalent diameter {diameter:.1f} mm"
        assert ct.image[blob].max() > lung + 400, f"nodule {i} is not visible"
        assert np.median(ct.image[blob]) > lung + 150


def test_lobes_and_sides(ct):
    present = set(ct.present_structures())
    assert set(LOBES["left"]) | set(LOBES["right"]) <= present
    assert {"heart", "aorta", "trachea", "esophagus", "sternum", "pulmonary_vein"} <= present
    assert _lps(ct, ct.mask("lung_left"))[0] > 30 and _lps(ct, ct.mask("lung_right"))[0] < -30  # LPS: +x is left
    upper, lower = _lps(ct, ct.mask("lung_upper_lobe_right")), _lps(ct, ct.mask("lung_lower_lobe_right"))
    middle = _lps(ct, ct.mask("lung_middle_lobe_right"))
    assert upper[2] > middle[2] and upper[2] > lower[2] + 20, "upper lobe is not above the lower lobe"
    assert middle[1] < lower[1] - 20, "middle lobe is not in front of the lower lobe"
    heart, spine = _lps(ct, ct.mask("heart")), _lps(ct, ct.mask("vertebrae_T8"))
    assert heart[0] > 0 and heart[1] < spine[1] - 40, "heart is not left of midline and in front of the spine"
    np.testing.assert_array_equal(
        ct.mask("lung_left"), ct.mask("lung_upper_lobe_left") | ct.mask("lung_lower_lobe_left")
    )


def test_reproducible_by_seed():
    kw = dict(shape=(64, 64, 16), spacing=(6.0, 6.0, 18.0))
    a, b, c = generate_chest_ct(3, **kw), generate_chest_ct(3, **kw), generate_chest_ct(4, **kw)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.tumours == b.tumours
    assert not np.array_equal(a.labels, c.labels)


def test_default_grid_is_real_world():
    ct = generate_chest_ct(seed=21, shape=(64, 64, None))
    sx, sy, sz = ct.spacing
    assert 0.6 <= sx == sy <= 0.9 and 1.0 <= sz <= 5.0
    assert ct.image.shape[:2] == (64, 64)
    assert 250 - sz <= ct.image.shape[2] * sz <= 320 + sz, "default coverage is not 250-320 mm"
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S")
    np.testing.assert_allclose(np.abs(np.diag(ct.affine)[:3]), ct.spacing)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(phase="arterial"), "unknown chest CT phase"),
        (dict(n_tumours=-1), "n_tumours"),
        (dict(tumour_diameter_mm=(3.0, 10.0)), "tumour_diameter_mm"),
        (dict(tumour_diameter_mm=(20.0, 10.0)), "tumour_diameter_mm"),
        (dict(shape=(4, 32, 8)), "too small"),
        (dict(shape=(0, 32, 8)), "too small"),
        (dict(shape=(32, 32, 0)), "too small"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_chest_ct(seed=0, **{"shape": (32, 32, 8), "spacing": (10.0, 10.0, 30.0), **kwargs})


def test_only_output_ids_remain(ct):
    """Painting-only ids (heart chambers, lungs before their lobes, abdominal fat) are all mapped to output ids."""
    assert set(np.unique(ct.labels).tolist()) <= {0, *STRUCTURE_IDS.values()}
    assert STRUCTURE_IDS["heart"] in ct.labels and not (ct.labels >= 240).any()


def test_ids_do_not_clash():
    assert STRUCTURE_IDS["lung_upper_lobe_left"] == 10 and STRUCTURE_IDS["heart"] == 51 and TUMOR == 205
    assert len(set(EXTRA_IDS.values())) == len(EXTRA_IDS) and min(EXTRA_IDS.values()) >= 200
    with pytest.raises(KeyError, match="unknown structure"):
        generate_chest_ct(seed=0, shape=(16, 16, 4), spacing=(20.0, 20.0, 60.0)).mask("lung_tumour_typo")


class TestLayouts:
    """Every chest layout reads back with MONAI's loaders; the same seed gives the same image in each layout."""

    KW = dict(
        n_cases=2, n_test=1, seed=3, anatomy="chest", shape=(48, 48, 12), spacing=(8.0, 8.0, 25.0), progress=False
    )

    def test_msd(self, tmp_path):
        from monai.data import load_decathlon_datalist
        from monai.transforms import LoadImaged

        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(tmp_path / "Task06_Lung", **self.KW)
        index = json.loads((out / "dataset.json").read_text())
        assert index["modality"] == {"0": "CT"} and index["labels"] == {"0": "background", "1": "cancer"}
        assert index["numTraining"] == 2 and index["test"] == ["./imagesTs/lung_003.nii.gz"]
        items = load_decathlon_datalist(str(out / "dataset.json"), True, "training", base_dir=str(out))
        assert [p["image"].rsplit("/", 1)[-1] for p in items] == ["lung_001.nii.gz", "lung_002.nii.gz"]
        data = LoadImaged(["image", "label"], image_only=True)(items[0])
        assert data["image"].shape == data["label"].shape == (48, 48, 12)
        assert set(np.unique(np.asarray(data["label"]))) <= {0, 1}
        assert (out / "labelsTs" / "lung_003.nii.gz").is_file()
        assert json.loads((out / "cohort.json").read_text())["generator"] == "monai_apps.data.synthetic_chest"
        assert not list(out.rglob(".*part*")), "temporary files left behind"

    def test_add_extends_the_training_set_beside_the_same_held_out_cases(self, tmp_path):
        from monai_apps.data.cohort import case_seed, generate_cohort

        out = generate_cohort(tmp_path / "Task06_Lung", **self.KW)
        held_out = (out / "imagesTs" / "lung_003.nii.gz").read_bytes()
        generate_cohort(out, **{**self.KW, "n_cases": 2, "n_test": 0, "seed": 4}, add=True)
        index = json.loads((out / "dataset.json").read_text())
        assert [t["image"] for t in index["training"]] == [f"./imagesTr/lung_00{i}.nii.gz" for i in (1, 2, 4, 5)]
        assert index["numTraining"] == 4 and index["test"] == ["./imagesTs/lung_003.nii.gz"]
        assert (out / "imagesTs" / "lung_003.nii.gz").read_bytes() == held_out
        cohort = json.loads((out / "cohort.json").read_text())
        assert [c["id"] for c in cohort["cases"]] == ["lung_001", "lung_002", "lung_003", "lung_004", "lung_005"]
        assert [c["seed"] for c in cohort["cases"][3:]] == [case_seed(4, 0), case_seed(4, 1)]
        assert cohort["seed"] == 3 and cohort["added"] == [{"seed": 4, "n_cases": 2, "n_test": 0}]
        alone = generate_cohort(tmp_path / "alone", **{**self.KW, "n_cases": 1, "n_test": 0, "seed": 4})
        np.testing.assert_array_equal(
            np.asarray(nib.load(out / "imagesTr" / "lung_004.nii.gz").dataobj),
            np.asarray(nib.load(alone / "imagesTr" / "lung_001.nii.gz").dataobj),
        )

    @pytest.mark.parametrize(
        ("setup", "kwargs", "match"),
        [
            (None, {}, "no cohort to add to"),
            ("chest", {"seed": 3}, "seed 3 draws cases already in the cohort"),
            ("chest", {"anatomy": "cardiac"}, "cannot add msd cases of monai_apps.data.synthetic_cardiac"),
            ("broken", {}, "not a cohort.json of this generator"),
        ],
    )
    def test_add_refuses_a_folder_it_cannot_extend(self, tmp_path, setup, kwargs, match):
        from monai_apps.data.cohort import generate_cohort

        out = tmp_path / "Task06_Lung"
        if setup == "chest":
            generate_cohort(out, **{**self.KW, "n_cases": 1, "n_test": 0})
        elif setup == "broken":
            out.mkdir()
            (out / "cohort.json").write_text("{not json")
        before = sorted(p.name for p in out.rglob("*")) if out.exists() else []
        with pytest.raises(ValueError, match=match) as err:
            generate_cohort(out, **{**self.KW, "n_cases": 1, "n_test": 0, "seed": 9, **kwargs}, add=True)
        assert "\n" not in str(err.value) and str(out / "cohort.json") in str(err.value)
        assert (sorted(p.name for p in out.rglob("*")) if out.exists() else []) == before  # nothing written

    def test_totalsegmentator(self, tmp_path):
        from monai.transforms import LoadImage

        from monai_apps.data.cohort import generate_cohort

        out = generate_cohort(tmp_path / "ts", layout="totalsegmentator", **{**self.KW, "n_test": 0, "n_cases": 1})
        subject = out / "Subject_001"
        image = LoadImage(image_only=True)(str(subject / "ct.nii.gz"))
        names = {p.name.removesuffix(".nii.gz") for p in (subject / "segmentations").iterdir()}
        assert {"lung_upper_lobe_left", "lung_lower_lobe_right", "heart", "aorta", "trachea", "lung_nodules"} <= names
        lobe = LoadImage(image_only=True)(str(subject / "segmentations" / "lung_upper_lobe_left.nii.gz"))
        assert lobe.shape == image.shape and set(np.unique(np.asarray(lobe))) == {0, 1}
        np.testing.assert_allclose(np.asarray(image.affine), np.asarray(lobe.affine))

    def test_dicom_equals_msd_image(self, tmp_path):
        import pydicom
        from monai.transforms import LoadImage

        from monai_apps.data.cohort import generate_cohort

        kw = {**self.KW, "n_test": 0, "n_cases": 1}
        dcm = generate_cohort(tmp_path / "dcm", layout="dicom", **kw)
        msd = generate_cohort(tmp_path / "msd", **kw)
        files = sorted((dcm / "case_000").iterdir())
        ds = pydicom.dcmread(files[0])
        assert ds.Modality == "CT" and ds.SOPClassUID == pydicom.uid.CTImageStorage and len(files) == 12
        from_dicom = LoadImage(image_only=True)(str(dcm / "case_000"))
        from_nifti = LoadImage(image_only=True)(str(msd / "imagesTr" / "lung_001.nii.gz"))
        np.testing.assert_array_equal(np.asarray(from_dicom), np.asarray(from_nifti))
        np.testing.assert_allclose(np.asarray(from_dicom.affine), np.asarray(from_nifti.affine), atol=1e-3)
        label = nib.load(dcm / "labels" / "case_000.nii.gz")
        np.testing.assert_array_equal(
            np.asarray(label.dataobj), np.asarray(nib.load(msd / "labelsTr" / "lung_001.nii.gz").dataobj)
        )


def test_cli_generate_chest(tmp_path, capsys):
    from monai_apps.cli import main

    out = tmp_path / "lung"
    args = ["generate", "--out", str(out), "--anatomy", "chest", "--n_cases", "1", "--shape", "[32,32,8]"]
    assert main([*args, "--spacing", "[10.0,10.0,40.0]", "--phase", "contrast"]) == 0
    assert (out / "imagesTr" / "lung_001.nii.gz").is_file()
    assert json.loads((out / "cohort.json").read_text())["cases"][0]["phase"] == "contrast"
    assert main([*args, "--spacing", "[10.0,10.0,40.0]", "--seed", "5", "--add", "true"]) == 0
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2
    assert (out / "imagesTr" / "lung_002.nii.gz").is_file()
    assert main(["generate", "--out", str(tmp_path / "x"), "--anatomy", "knee"]) == 1
    assert "unknown anatomy 'knee'" in capsys.readouterr().err

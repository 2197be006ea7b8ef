"""Fuzzing of the loading entry points beyond the liver bundle's (which ``test_liver_hardening.py`` fuzzes).

Each case cuts and bit-flips a valid file and feeds it to an entry point that reads user files: the only exception
allowed is the entry point's own one-line input error naming the file. The number of examples comes from the
hypothesis profile in ``conftest.py`` (40 in CI, ``HYPOTHESIS_PROFILE=fuzz`` for 1000).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monai_apps.bundles import BUNDLES_DIR, bundle_imports


def _bundle_scripts(bundle: str):
    with bundle_imports(BUNDLES_DIR / bundle):
        return importlib.import_module("scripts")


def _mutate(data: st.DataObject, blob: bytes) -> bytes:
    mutable = bytearray(blob)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(mutable) - 1), st.integers(0, 255)), max_size=8))
    for pos, value in flips:
        mutable[pos] = value
    if data.draw(st.booleans()):
        mutable = mutable[: data.draw(st.integers(0, len(mutable)))]
    return bytes(mutable)


@pytest.fixture(scope="module")
def radiograph(tmp_path_factory) -> tuple[object, bytes]:
    from monai_apps.data.synthetic_cxr import generate_cxr, write_cxr_dicom

    scripts = _bundle_scripts("pneumonia_cxr_classification")
    path = write_cxr_dicom(tmp_path_factory.mktemp("cxr") / "cxr.dcm", generate_cxr(seed=1, pneumonia=True, size=64))
    return scripts, path.read_bytes()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_radiograph_reader(radiograph, tmp_path_factory, data):
    scripts, valid = radiograph
    path = tmp_path_factory.mktemp("case") / "cxr.dcm"
    path.write_bytes(_mutate(data, valid))
    try:
        image, _ = scripts.radiograph.read_radiograph(path)
    except scripts.inputs.InputError as err:
        assert "\n" not in str(err) and str(path) in str(err)
    else:
        assert image.ndim == 2 and image.dtype == np.float32
        assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0


@pytest.fixture(scope="module")
def ts_subject(tmp_path_factory) -> Path:
    from monai_apps.data.synthetic_abdomen import generate_abdominal_ct
    from monai_apps.data.writers import write_totalsegmentator_subject

    ct = generate_abdominal_ct(seed=2, shape=(32, 32, 6), spacing=(10.0, 10.0, 30.0))
    masks = {name: ct.mask(name) for name in ct.present_structures()}
    return write_totalsegmentator_subject(tmp_path_factory.mktemp("ts") / "s1", ct.image, ct.affine, masks)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_totalsegmentator_subject_reader(ts_subject, tmp_path_factory, data):
    import shutil

    from monai_apps.data.organ_patches import OrganPatchError, read_subject

    folder = tmp_path_factory.mktemp("case") / "s1"
    shutil.copytree(ts_subject, folder)
    target = data.draw(
        st.sampled_from(
            ["ct.nii.gz", *sorted(f"segmentations/{p.name}" for p in (ts_subject / "segmentations").iterdir())[:2]]
        )
    )
    (folder / target).write_bytes(_mutate(data, (ts_subject / target).read_bytes()))
    try:
        subject = read_subject(folder, write_combined=False)
    except OrganPatchError as err:
        assert "\n" not in str(err) and folder.name in str(err)
    else:
        assert subject.hu.shape == subject.labels.shape

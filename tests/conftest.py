"""Shared fixtures: paths, the real data in ../shared, and small generated datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Fuzz tests: a fixed, bounded set of examples in CI; `HYPOTHESIS_PROFILE=fuzz make test PYTEST_ARGS="-k fuzz"` for a
# longer random campaign.
settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None)
settings.register_profile("fuzz", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# One OpenMP thread per test process unless told otherwise: on a few shared cores, busy-waiting OpenMP threads stall
# (the abdominal 2D smoke run took 150-275 s with the default threads and 30 s with one, load ~9 on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MONAI_APPS_SHARED", REPO_ROOT.parent / "shared")).resolve()
REAL = SHARED / "data" / "real"
SCHEMA = SHARED / "schema" / "meta_schema_20240725.json"

if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))


def pytest_report_header(config):
    return f"shared data: {SHARED} ({'found' if REAL.is_dir() else 'MISSING'})"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """``../shared/data/real``: the real scans (tests fail, not skip, when CI lacks them)."""
    assert REAL.is_dir(), f"{REAL}: the shared real data is missing (set MONAI_APPS_SHARED to its parent folder)"
    return REAL


@pytest.fixture(scope="session")
def schema_file() -> Path:
    assert SCHEMA.is_file(), f"{SCHEMA}: the vendored bundle metadata schema is missing"
    return SCHEMA


@pytest.fixture(autouse=True)
def _fresh_bundle_scripts():
    """Every bundle has its own ``scripts`` package: forget the last one before and after each test, and give
    ``sys.path`` back as it was (MONAI inserts a bundle root at index 1 and leaves it there, so after a run of one
    bundle's tests its folder would shadow the next bundle's ``scripts``)."""
    from monai_apps.bundles import _forget_bundle_scripts

    saved_path = list(sys.path)
    _forget_bundle_scripts()
    yield
    _forget_bundle_scripts()
    sys.path[:] = saved_path

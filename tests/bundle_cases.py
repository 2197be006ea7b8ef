"""Per-bundle smoke cases for the shared model-zoo checks in ``test_bundles.py``.

Every folder in ``bundles/`` must have a module ``tests/smoke_cases/<bundle>.py`` that defines ``CASE``, a
:class:`SmokeCase`: how to make a tiny dataset for it, which settings shrink it to seconds on a CPU, and how to call
its inference. A bundle without a case fails the checks.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SmokeCase:
    """How the shared checks run one bundle on tiny generated data.

    Attributes:
        make_data: writes a tiny dataset into a folder and returns the ``dataset_dir`` to train from.
        inference_input: returns the ``input_path`` for inference, given that ``dataset_dir``.
        overrides: bundle settings that shrink the run (voxel size, patch size, network width).
        output_glob: glob, under the inference ``output_dir``, of the files inference writes.
    """

    make_data: Callable[[Path], Path]
    inference_input: Callable[[Path], str]
    overrides: dict = field(default_factory=dict)
    output_glob: str = "*"


def assert_same_geometry(out_file: str | Path, reference: np.ndarray, reference_affine: np.ndarray) -> None:
    """Assert a written NIfTI has the shape and affine of the reference."""
    import nibabel as nib

    out = nib.load(str(out_file))
    assert out.shape == tuple(reference.shape), f"{out_file}: shape {out.shape} != input {reference.shape}"
    np.testing.assert_allclose(out.affine, reference_affine, atol=1e-3)


def load_smoke_cases() -> dict[str, SmokeCase]:
    """``CASE`` of every module in ``tests/smoke_cases/``, by bundle name (the module name)."""
    import smoke_cases

    cases = {}
    for info in pkgutil.iter_modules(smoke_cases.__path__):
        module = importlib.import_module(f"smoke_cases.{info.name}")
        cases[info.name] = module.CASE
    return cases


def __getattr__(name: str):
    # ``SMOKE_CASES`` is built on first use, so a smoke-case module can import this one without a cycle
    if name == "SMOKE_CASES":
        return load_smoke_cases()
    raise AttributeError(name)

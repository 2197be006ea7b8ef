"""Locate the repository's bundles and run their configs in-process through ``monai.bundle``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["BUNDLES_DIR", "REPO_ROOT", "bundle_imports", "bundle_path", "config_files", "list_bundles", "run_bundle"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLES_DIR = REPO_ROOT / "bundles"


def list_bundles() -> list[str]:
    """Names of the bundles in ``bundles/`` (folders holding ``configs/metadata.json``)."""
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())


def bundle_path(name: str) -> Path:
    """The folder of bundle ``name``.

    Raises:
        FileNotFoundError: when there is no such bundle (the message lists the ones there are).
    """
    path = BUNDLES_DIR / name
    if not (path / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"{path}: no such bundle; bundles: {', '.join(list_bundles())}")
    return path


def config_files(bundle: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Paths of config files in merge order: a bundle's by name without ``.json``, or any ``.json`` path."""
    root = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    files = [Path(n) if str(n).endswith(".json") else root / "configs" / f"{n}.json" for n in names]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: config file not found")
    return [str(f) for f in files]


def _forget_bundle_scripts() -> None:
    """Drop cached ``scripts`` modules: every bundle has its own ``scripts`` package under the same name."""
    for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[name]


@contextmanager
def bundle_imports(root: str | os.PathLike) -> Iterator[None]:
    """Within the block, ``import scripts`` gives this bundle's ``scripts`` package (and no other bundle's).

    The bundle folder goes first on ``sys.path`` (MONAI inserts it at index 1 only, so a folder that an earlier run
    left at index 0 would otherwise win) and cached ``scripts`` modules are dropped on entry (they stay cached after the
    block, so objects already built keep working). On exit ``sys.path`` is given back as it was: ``monai.bundle``
    inserts the bundle root again while it runs and never removes it, which would leave this bundle's folder in front
    of the next one's.
    """
    saved_path = list(sys.path)
    _forget_bundle_scripts()
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path[:] = saved_path


def run_bundle(bundle: str | os.PathLike, configs: Sequence[str], **overrides: Any) -> Any:
    """Run a bundle workflow in-process, as ``python -m monai.bundle run`` would.

    Args:
        bundle: a bundle name in ``bundles/`` or a bundle folder.
        configs: config names merged in order, for example ``["train", "unet", "cpu"]``.
        overrides: config overrides, for example ``dataset_dir="data/Task03_Liver"``.

    Returns:
        the workflow object after it ran.
    """
    from monai.bundle import ConfigWorkflow

    root = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    _forget_bundle_scripts()
    overrides.setdefault("bundle_root", str(root))
    workflow = ConfigWorkflow(
        config_file=config_files(root, configs),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"),
        **overrides,
    )
    with bundle_imports(root):
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    return workflow

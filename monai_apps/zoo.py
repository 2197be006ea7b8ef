"""Share a bundle in MONAI model-zoo format: a versioned zip, ``large_files.yml`` and a ``model_info.json`` entry.

``export_bundle`` writes ``<name>_v<version>.zip`` holding ``<name>/`` with the configs, scripts, docs, license,
``models/model.pt`` (weights) and ``models/model.ts`` (TorchScript), plus ``large_files.yml`` inside the bundle
(every weight file with its SHA-256 and where it is hosted), and adds ``"<name>_v<version>": {"checksum": <SHA-1 of
the zip>, "source": <url>}`` to ``model_info.json`` as the model zoo's index does. The zip installs with MONAI's
own client, offline::

    python -m monai.bundle download --name <name> --version <version> --url file:///abs/path/<name>_v<version>.zip \\
        --bundle_dir installed

When the weights were trained with variant files (for example ``unet.json`` + ``cpu.json``), pass them as
``variants``: the exported ``train.json``, ``evaluate.json`` and ``inference.json`` are written with the variants
merged in, so ``monai.bundle.load`` and ``monai.bundle run`` on the installed copy build the network the weights fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from .bundles import bundle_path, config_files
from .data.writers import atomic_path, write_json

__all__ = ["export_bundle", "file_digest"]

_MERGED = ("train", "evaluate", "inference")
_NOT_SHIPPED = {"__pycache__", "models", "eval", "logs", "cache"}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_configs(root: Path, staged: Path, variants: Sequence[str]) -> None:
    from monai.bundle import ConfigParser

    shutil.copytree(root / "configs", staged / "configs")
    if not variants:
        return
    for name in _MERGED:
        if not (root / "configs" / f"{name}.json").is_file():
            continue
        base = ["train", name] if name == "evaluate" else [name]
        parser = ConfigParser()
        parser.read_config(config_files(root, [*base, *variants]))
        if name == "evaluate":  # keep evaluate.json an override of train.json: only its own keys, variants applied
            own = ConfigParser.load_config_file(str(root / "configs" / "evaluate.json"))
            merged = {k: parser[k] for k in own}
        else:
            merged = parser.get()
        (staged / "configs" / f"{name}.json").write_text(json.dumps(merged, indent=4) + "\n")
    for variant in variants:  # merged in: drop the files so nobody merges them twice
        (staged / "configs" / f"{variant}.json").unlink(missing_ok=True)


def export_bundle(
    bundle: str | os.PathLike,
    out_dir: str | os.PathLike = "dist",
    ckpt: str | os.PathLike | None = None,
    variants: Sequence[str] = (),
    url_base: str | None = None,
) -> dict:
    """Write a bundle as a model-zoo zip with its TorchScript export, ``large_files.yml`` and index entry.

    Args:
        bundle: bundle name (in ``bundles/``) or folder.
        out_dir: destination of the zip, the hosted weight files and ``model_info.json``.
        ckpt: trained weights (default ``<bundle>/models/model.pt``).
        variants: config files the weights were trained with, merged into the exported configs.
        url_base: where the zip and weights will be hosted (default: ``file://`` URIs of ``out_dir``).

    Returns:
        the index entry, the zip path and the weight hashes.

    Raises:
        FileNotFoundError: when there are no weights to export.
    """
    from monai.bundle import ConfigParser

    from .export import build_network

    root = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    ckpt = Path(ckpt) if ckpt is not None else root / "models" / "model.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no trained weights to export (train the bundle first, or give --ckpt)")
    meta = ConfigParser.load_config_file(str(root / "configs" / "metadata.json"))
    name, version = root.name, str(meta["version"])
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base_url = url_base.rstrip("/") if url_base else out.as_uri()
    zip_name = f"{name}_v{version}.zip"

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / name
        staged.mkdir()
        for item in root.iterdir():
            if item.name in _NOT_SHIPPED or item.name == "configs":
                continue
            if item.is_dir():
                shutil.copytree(item, staged / item.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(item, staged / item.name)
        _write_configs(root, staged, variants)
        (staged / "models").mkdir()
        net = build_network(root, ["inference", *variants], ckpt)  # fails here if the weights do not fit
        import torch
        from monai.networks.utils import convert_to_torchscript

        torch.save(net.state_dict(), staged / "models" / "model.pt")
        convert_to_torchscript(net, filename_or_obj=str(staged / "models" / "model.ts"))

        weights_dir = out / "weights" / f"{name}_v{version}"
        weights_dir.mkdir(parents=True, exist_ok=True)
        large_files, hashes = [], {}
        for weight in ("model.pt", "model.ts"):
            digest = file_digest(staged / "models" / weight)
            hashes[weight] = digest
            shutil.copy2(staged / "models" / weight, weights_dir / weight)
            large_files.append(
                {
                    "path": f"models/{weight}",
                    "url": f"{base_url}/weights/{name}_v{version}/{weight}",
                    "hash_val": digest,
                    "hash_type": "sha256",
                }
            )
        lines = ["large_files:"]
        for entry in large_files:
            lines += [
                f'  - path: "{entry["path"]}"',
                f'    url: "{entry["url"]}"',
                f'    hash_val: "{entry["hash_val"]}"',
                f'    hash_type: "{entry["hash_type"]}"',
            ]
        (staged / "large_files.yml").write_text("\n".join(lines) + "\n")

        with atomic_path(out / zip_name) as tmp_zip:
            with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(staged.rglob("*")):
                    if path.is_file():
                        zf.write(path, Path(name) / path.relative_to(staged))

    entry = {
        f"{name}_v{version}": {"checksum": file_digest(out / zip_name, "sha1"), "source": f"{base_url}/{zip_name}"}
    }
    index_path = out / "model_info.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    index.update(entry)
    write_json(index_path, index)
    return {"zip": str(out / zip_name), "index": entry, "sha256": hashes, "variants": list(variants)}

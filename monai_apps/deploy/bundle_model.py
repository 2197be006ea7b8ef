"""Where a deploy app's model comes from (a bundle folder or its TorchScript export) and how its config is read.

An app is given ``-m MODEL``. :func:`resolve_model` accepts:

* a bundle folder (``configs/metadata.json``): its configs, its ``scripts`` and the weights in ``models/``
  (``model.ts`` if present, else the ``model.pt`` state dict, loaded weights-only);
* a TorchScript export made by ``python -m monai.bundle ckpt_export``: the network is the TorchScript module and
  the configs are the ones embedded in it (``extra/metadata.json``, ``extra/inference.json`` and the variants
  exported with it, merged over ``inference.json`` by name);
* a ``.pt`` state dict: the configs come from the repository's bundle;
* a model repository folder as the Holoscan packager lays it out (``models/<name>/<one model>``).

The inference config is then read with :class:`monai.bundle.ConfigParser`, exactly as ``monai.bundle run`` reads
it; only the file reader and writer transforms (``LoadImage*``, ``SaveImage*``) become identities before anything
is instantiated, because an app hands images in memory between operators.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BundleModel",
    "ModelError",
    "bundle_scripts",
    "inference_parser",
    "load_network",
    "resolve_model",
    "run_inference_workflow",
]

#: transforms that read or write files: an app passes images in memory, so they are dropped from the config
FILE_TRANSFORMS = ("LoadImage", "SaveImage")

#: configs merged over ``train.json``, never over ``inference.json``
TRAINING_CONFIGS = ("train.json", "evaluate.json", "multi_gpu_train.json")

_SCRIPTS_LOCK = threading.RLock()

logger = logging.getLogger(__name__)


class ModelError(ValueError):
    """The model given to an app is missing or is not the bundle the app runs (one line naming the path)."""


@dataclass
class BundleModel:
    """A resolved model: where its weights and its inference configs are.

    Attributes:
        kind: ``"bundle"`` (a bundle folder), ``"torchscript"`` (a TorchScript export) or ``"checkpoint"``
            (a state dict with the repository's bundle configs).
        weights: the weights file (``model.ts`` or ``model.pt``).
        metadata: the bundle's ``metadata.json`` content.
        config_files: config files merged in order (for a TorchScript export, extracted to a private folder).
        root: the bundle folder whose ``scripts`` package the configs may import (``None`` if there is none).
        metadata_file: the ``metadata.json`` file (for a TorchScript export, extracted beside its configs).
    """

    kind: str
    weights: Path
    metadata: dict
    config_files: list[Path]
    root: Path | None
    metadata_file: Path | None = None
    _tmp: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The bundle's name from its metadata."""
        return str(self.metadata.get("name", "unnamed bundle"))

    @property
    def version(self) -> str:
        """The bundle's version from its metadata."""
        return str(self.metadata.get("version", "0.0.0"))

    def output_channels(self, output: str = "pred") -> dict[int, str]:
        """Channel index -> name of a network output, from ``network_data_format``."""
        outputs = self.metadata.get("network_data_format", {}).get("outputs", {})
        channel_def = outputs.get(output, {}).get("channel_def", {})
        return {int(k): str(v) for k, v in channel_def.items()}


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


def _embedded_configs(path: Path) -> tuple[dict, list[tuple[str, bytes]]]:
    """Metadata and inference configs embedded in a TorchScript export (``<archive>/extra/*.json``).

    TorchScript stores extra files unordered, so the merge order is: ``inference.json`` first, then the other
    embedded variants by name; training-only configs (``train``, ``evaluate``, ``multi_gpu_train``) are left out.
    """
    with zipfile.ZipFile(path) as z:
        extra = [n for n in z.namelist() if "/extra/" in n and n.endswith(".json")]
        meta_names = [n for n in extra if n.endswith("/extra/metadata.json")]
        if not meta_names:
            raise ModelError(f"{path}: TorchScript file has no embedded metadata.json (export it with ckpt_export)")
        metadata = json.loads(z.read(meta_names[0]))
        configs = {Path(n).name: z.read(n) for n in extra if n not in meta_names}
    names = sorted(n for n in configs if n not in TRAINING_CONFIGS)
    names.sort(key=lambda n: n != "inference.json")
    return metadata, [(n, configs[n]) for n in names]


def _repository_bundle(name: str | None) -> Path | None:
    if not name:
        return None
    from monai_apps.bundles import BUNDLES_DIR

    root = BUNDLES_DIR / name
    return root if (root / "configs" / "metadata.json").is_file() else None


def _config_paths(root: Path, names: Sequence[str]) -> list[Path]:
    files = []
    for n in names:
        if "/" in n or "\\" in n or ".." in n:
            raise ModelError(f"{n}: a config name, not a path, is expected (for example 'inference' or 'cpu')")
        f = root / "configs" / (n if n.endswith(".json") else f"{n}.json")
        if not f.is_file():
            raise ModelError(f"{f}: config file not found")
        files.append(f)
    return files


def _read_metadata(root: Path) -> dict:
    meta = root / "configs" / "metadata.json"
    try:
        return json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{meta}: unreadable bundle metadata ({err})") from err


def resolve_model(
    path: str | os.PathLike,
    bundle: str | None = None,
    configs: Sequence[str] | None = None,
) -> BundleModel:
    """Find the weights and inference configs of the model an app is given.

    Args:
        path: a bundle folder, a TorchScript export, a ``.pt`` state dict, or a model repository folder.
        bundle: the repository bundle the app runs (for a ``.pt`` state dict, and for the ``scripts`` of a
            TorchScript export whose configs import them).
        configs: config names merged in order (default: ``["inference"]`` for a folder or state dict, and every
            config embedded in a TorchScript export).

    Raises:
        ModelError: when the path is missing, holds no weights, or is none of the accepted forms.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"{path}: model not found (give a bundle folder or its TorchScript export)")
    if path.is_dir():
        if (path / "configs" / "metadata.json").is_file():
            weights = next(
                (w for w in (path / "models" / "model.ts", path / "models" / "model.pt") if w.is_file()), None
            )
            if weights is None:
                raise ModelError(
                    f"{path / 'models'}: no model.ts or model.pt in this bundle (train it, or give its TorchScript)"
                )
            return BundleModel(
                kind="torchscript" if weights.suffix == ".ts" else "bundle",
                weights=weights,
                metadata=_read_metadata(path),
                config_files=_config_paths(path, list(configs or ["inference"])),
                root=path,
                metadata_file=path / "configs" / "metadata.json",
            )
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1:  # a model repository as the Holoscan packager lays it out: <models>/<name>/<model>
            return resolve_model(entries[0], bundle=bundle, configs=configs)
        raise ModelError(f"{path}: not a bundle folder (no configs/metadata.json) and not a folder with one model")
    if _is_torchscript(path):
        metadata, embedded = _embedded_configs(path)
        if configs:
            wanted = [c if c.endswith(".json") else f"{c}.json" for c in configs]
            missing = [w for w in wanted if w not in dict(embedded)]
            if missing:
                raise ModelError(f"{path}: configs {missing} are not embedded in this TorchScript export")
            embedded = [(w, dict(embedded)[w]) for w in wanted]
        if not embedded:
            raise ModelError(f"{path}: TorchScript file embeds no inference config (export it with --config_file)")
        tmp = tempfile.TemporaryDirectory(prefix="bundle_configs_")
        files = []
        for name, data in embedded:
            f = Path(tmp.name) / name
            f.write_bytes(data)
            files.append(f)
        meta_file = Path(tmp.name) / "metadata.json"
        meta_file.write_text(json.dumps(metadata))
        return BundleModel("torchscript", path, metadata, files, _repository_bundle(bundle), meta_file, _tmp=tmp)
    root = _repository_bundle(bundle)
    if path.suffix in (".pt", ".pth") and root is not None:
        files = _config_paths(root, list(configs or ["inference"]))
        return BundleModel("checkpoint", path, _read_metadata(root), files, root, root / "configs" / "metadata.json")
    raise ModelError(f"{path}: not a bundle folder, a TorchScript export or a .pt checkpoint of {bundle or 'a bundle'}")


@contextlib.contextmanager
def bundle_scripts(root: str | os.PathLike | None) -> Iterator[None]:
    """Make ``root/scripts`` the importable ``scripts`` package inside the block (one bundle at a time).

    Every bundle has its own ``scripts`` package under the same name, so cached ``scripts`` modules are set aside
    on entry and dropped on exit; a process-wide lock keeps two bundles from interleaving.
    """
    with _SCRIPTS_LOCK:
        saved = {k: sys.modules.pop(k) for k in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]}
        entry = str(Path(root).resolve()) if root is not None else None
        if entry:
            sys.path.insert(0, entry)
        try:
            yield
        finally:
            if entry and entry in sys.path:
                sys.path.remove(entry)
            for k in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
                del sys.modules[k]
            sys.modules.update(saved)


def _neutralise_file_transforms(config: Any) -> Any:
    """``config`` with every ``LoadImage*``/``SaveImage*`` component replaced by ``Identity``/``Identityd``.

    The replacement keeps the component's id, so a config that lists its transforms by reference
    (``"@post_save"``) or builds the list in an expression still resolves; nothing reads or writes a file.
    """
    if isinstance(config, list):
        return [_neutralise_file_transforms(v) for v in config]
    if not isinstance(config, dict):
        return config
    target = str(config.get("_target_", "")).split(".")[-1]
    if target.startswith(FILE_TRANSFORMS):
        if target.endswith("d"):
            return {"_target_": "Identityd", "keys": config.get("keys", "image"), "allow_missing_keys": True}
        return {"_target_": "Identity"}
    return {k: _neutralise_file_transforms(v) for k, v in config.items()}


def inference_parser(model: BundleModel, overrides: Mapping[str, Any] | None = None):
    """The bundle's inference config, read by ``monai.bundle.ConfigParser``, with file readers/writers removed.

    Args:
        model: the resolved model.
        overrides: config values to set, for example ``{"device": "cpu"}``.

    Returns:
        a :class:`monai.bundle.ConfigParser` (nothing instantiated yet).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(dict(model.metadata))
    parser.read_config([str(f) for f in model.config_files])
    if model.root is not None:
        parser["bundle_root"] = str(model.root)
    for key, value in (overrides or {}).items():
        parser[key] = value
    for key, value in list(parser.get().items()):
        if key != "_meta_":
            parser[key] = _neutralise_file_transforms(value)
    return parser


def load_network(model: BundleModel, parser, device):
    """The network in eval mode: the TorchScript module, or the bundle's ``network`` with the weights loaded.

    State dicts are loaded weights-only with ``map_location`` (a GPU checkpoint loads on a CPU); a checkpoint
    holding ``{"model": state_dict}`` (a full training checkpoint) is accepted too.

    Raises:
        ModelError: when the weights do not fit the bundle's network.
    """
    import torch

    if model.kind == "torchscript":
        try:
            return torch.jit.load(str(model.weights), map_location=device).eval()
        except RuntimeError as err:
            raise ModelError(f"{model.weights}: not a loadable TorchScript module ({err})") from err
    net_def = parser.get_parsed_content("network_def")
    try:
        state = torch.load(str(model.weights), map_location=device, weights_only=True)
    except Exception as err:
        raise ModelError(
            f"{model.weights}: cannot load weights ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        net_def.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[:2])[:300]
        configs = ", ".join(f.stem for f in model.config_files)
        raise ModelError(
            f"{model.weights}: weights do not fit the network of configs [{configs}] ({detail}); "
            "were they trained with another variant? (--configs)"
        ) from err
    network = parser.get_parsed_content("network") if "network" in parser else net_def.to(device)
    return network.eval()


#: largest array (elements) copied from the evaluator's outputs into the records (images are left out)
MAX_RECORD_ELEMENTS = 4096


def _plain(value: Any) -> Any:
    """Tensors and arrays as Python numbers/lists; ``None`` for anything large (an image) or unknown."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, np.ndarray):
        if value.size > MAX_RECORD_ELEMENTS:
            return None
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)) and len(value) <= MAX_RECORD_ELEMENTS:
        items = [_plain(v) for v in value]
        return items if all(v is not None for v in items) else None
    return None


def _records(batch: Any, output: Any) -> list[dict[str, Any]]:
    batch = batch if isinstance(batch, list) else [batch]
    output = output if isinstance(output, list) else [output]
    out = []
    for b, o in zip(batch, output, strict=False):
        record = {}
        for source in (b, o):  # the output's keys win
            if isinstance(source, Mapping):
                for k, v in source.items():
                    v = _plain(v)
                    if v is not None:
                        record[str(k)] = v
        out.append(record)
    return out


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def _quiet_workflow_logging() -> None:
    """``ConfigWorkflow`` warns on every run that the app keeps its own logging set-up (``logging_file=False``)."""
    log = logging.getLogger("monai.bundle.workflows")
    if not any(isinstance(f, _DropMessage) for f in log.filters):
        log.addFilter(_DropMessage("Logging file is set to False"))


def run_inference_workflow(
    model: BundleModel, input_path: str | os.PathLike, output_dir: str | os.PathLike, **overrides: Any
) -> list[dict[str, Any]]:
    """Run the bundle's inference config on ``input_path``; return one record per evaluated input.

    Args:
        model: the resolved model (a bundle folder or state dict: its weights go to ``ckpt_path``; a TorchScript
            export replaces the config's ``network`` and the handlers that load ``ckpt_path`` are left out).
        input_path: the bundle's ``input_path`` (here a DICOM series folder).
        output_dir: the bundle's ``output_dir`` (its own files, such as a predictions CSV, go there).
        overrides: more config overrides.

    Returns:
        the evaluator's post-processed outputs merged with their batch metadata (small values only).
    """
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    settings: dict[str, Any] = {"input_path": str(input_path), "output_dir": str(output_dir), "num_workers": 0}
    if model.root is not None:
        settings["bundle_root"] = str(model.root)
    if model.kind != "torchscript":
        settings["ckpt_path"] = str(model.weights)
    settings.update(overrides)
    records: list[dict[str, Any]] = []
    _quiet_workflow_logging()
    with bundle_scripts(model.root):
        workflow = ConfigWorkflow(
            config_file=[str(f) for f in model.config_files],
            meta_file=str(model.metadata_file),
            logging_file=False,
            workflow_type="infer",
            **settings,
        )
        if model.kind == "torchscript":
            workflow.parser["network"] = torch.jit.load(str(model.weights), map_location="cpu").eval()
            handlers = workflow.parser.get("handlers", [])
            kept = [h for h in handlers if not (isinstance(h, dict) and "@ckpt_path" in str(h.get("load_path", "")))]
            if len(kept) != len(handlers):
                logger.warning("TorchScript export: the bundle's checkpoint-loading handlers are not used")
            workflow.parser["handlers"] = kept
        workflow.initialize()
        evaluator = workflow.parser.get_parsed_content("evaluator")
        evaluator.add_event_handler(
            Events.ITERATION_COMPLETED, lambda engine: records.extend(_records(engine.state.batch, engine.state.output))
        )
        workflow.run()
        workflow.finalize()
    return records

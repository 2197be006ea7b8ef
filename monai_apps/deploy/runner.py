"""Run a deploy app in-process from the command line: arguments, staged outputs, one-line errors.

Every app is started the same way::

    python -m monai_apps.deploy.<app> -i DICOM_DIR -o OUT_DIR -m MODEL [--configs inference,unet,cpu] [-l INFO]

``-i``, ``-o``, ``-m`` and ``-l`` are the MONAI Deploy App SDK's own options (inside a MAP they default to the
``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH`` variables); ``--configs`` (or the
``MONAI_BUNDLE_CONFIGS`` variable) names the bundle config variants to merge over ``inference`` when MODEL is a
bundle folder or a ``.pt`` state dict. The app writes into a private staging folder beside ``OUT_DIR`` and its files
are moved into ``OUT_DIR`` only when the whole app succeeded, so a failed run leaves no half-written output.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["input_errors", "main", "quiet_known_warnings", "raise_stack_limit", "run_app", "usage"]

logger = logging.getLogger(__name__)


def raise_stack_limit(mib: int = 32) -> None:
    """Raise the soft stack limit (Holoscan warns below 32 MiB) when the hard limit allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = mib * 1024 * 1024
    if soft != resource.RLIM_INFINITY and soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_STACK, (want, hard))


def quiet_known_warnings() -> None:
    """Silence warnings every run would print and a user cannot act on (MONAI's notice about ``Orientationd``'s
    changed ``labels`` default, which this project's configs rely on: RAS from the image's ``space``)."""
    warnings.filterwarnings("ignore", message=r".*Orientationd?\.__init__:labels", category=FutureWarning)


def input_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input (reported as one line, exit status 1)."""
    from .bundle_model import ModelError
    from .operators.loader import DicomInputError
    from .operators.selector import NoMatchingSeriesError

    return (ModelError, DicomInputError, NoMatchingSeriesError, FileNotFoundError, NotADirectoryError)


def _split_argv(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--configs", default=os.environ.get("MONAI_BUNDLE_CONFIGS"))
    known, rest = extra.parse_known_args(list(argv))
    configs = None
    if known.configs:
        configs = [c.strip() for c in str(known.configs).replace("[", "").replace("]", "").split(",") if c.strip()]
        if configs and configs[0] != "inference":
            configs = ["inference", *configs]
    return rest, configs


def _option(argv: Sequence[str], short: str, long: str) -> str | None:
    for i, a in enumerate(argv):
        if a in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(long + "="):
            return a.split("=", 1)[1]
    return None


def _replace_option(argv: list[str], short: str, long: str, value: str) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in (short, long) and i + 1 < len(argv):
            skip = True
            continue
        if a.startswith(long + "="):
            continue
        out.append(a)
    return [*out, long, value]


def run_app(app_cls, argv: Sequence[str] | None = None, **app_kwargs) -> Path:
    """Compose and run ``app_cls`` in-process; move its outputs into the output folder when it succeeds.

    Args:
        app_cls: a :class:`monai.deploy.core.Application` subclass whose constructor takes ``configs``.
        argv: ``[program, *options]`` (default ``sys.argv``).
        app_kwargs: passed to the app's constructor.

    Returns:
        the output folder.
    """
    argv = list(sys.argv if argv is None else argv)
    rest, configs = _split_argv(argv[1:])
    out = Path(_option(rest, "-o", "--output") or os.environ.get("HOLOSCAN_OUTPUT_PATH") or "output").absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        app = app_cls(
            [sys.executable, argv[0], *_replace_option(rest, "-o", "--output", str(staging))],
            configs=configs,
            **app_kwargs,
        )
        app.run()
        out.mkdir(parents=True, exist_ok=True)
        for item in sorted(staging.rglob("*")):
            if item.is_file():
                target = out / item.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def usage(app_cls, program: str = "app") -> str:
    """The command-line help of an app: its summary and the options every app takes."""
    module = sys.modules.get(app_cls.__module__)
    summary = ((module.__doc__ if module else None) or app_cls.__doc__ or "").strip().splitlines()[0]
    name = app_cls.__module__.rsplit(".", 1)[0]
    return f"""usage: python -m {name} -i DICOM_DIR -o OUT_DIR -m MODEL [--configs VARIANTS] [-l LEVEL]

{summary}

options:
  -i, --input DIR      folder of DICOM files (subfolders are read too); default $HOLOSCAN_INPUT_PATH
  -o, --output DIR     output folder (written only when the app succeeds); default $HOLOSCAN_OUTPUT_PATH
  -m, --model PATH     a bundle folder, its TorchScript export (model.ts) or a .pt state dict;
                       default $HOLOSCAN_MODEL_PATH
  --configs LIST       bundle config variants merged over inference.json, e.g. unet,cpu
                       (default $MONAI_BUNDLE_CONFIGS; a TorchScript export uses its embedded configs)
  -l, --log-level LVL  DEBUG, INFO, WARN, ERROR or CRITICAL
  -h, --help           this help"""


def main(app_cls, argv: Sequence[str] | None = None, **app_kwargs) -> int:
    """Entry point of ``python -m monai_apps.deploy.<app>``: bad input ends with one line on stderr, status 1."""
    raise_stack_limit()
    quiet_known_warnings()
    args = list(sys.argv if argv is None else argv)
    if any(a in ("-h", "--help") for a in args[1:]):
        print(usage(app_cls, args[0]))
        return 0
    try:
        out = run_app(app_cls, args, **app_kwargs)
    except input_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"outputs in {out}")
    return 0

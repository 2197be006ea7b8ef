"""The Gradio demo over the repository's bundles: ``python -m monai_apps demo`` (see :mod:`.app`)."""

from .app import DemoApp, build_demo, launch

__all__ = ["DemoApp", "build_demo", "launch"]

"""MONAI bundles for CT imaging: data preparation, synthetic data, bundle runners, deploy apps and benchmarks.

The bundles themselves live in ``bundles/<name>/`` in MONAI model-zoo format; this package holds the code they
share with users (dataset layouts, generators, command line), never code a bundle needs at run time.
"""

__version__ = "0.1.0"

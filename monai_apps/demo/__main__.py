"""``python -m monai_apps.demo``: the same as ``python -m monai_apps demo``."""

import sys

from monai_apps.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))

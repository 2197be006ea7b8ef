"""``python -m monai_apps.deploy.abdominal_organs -i DICOM_DIR -o OUT_DIR -m MODEL``: see :mod:`.app`."""

import sys

from monai_apps.deploy.abdominal_organs.app import AbdominalOrgansSegApp
from monai_apps.deploy.runner import main

if __name__ == "__main__":
    sys.exit(main(AbdominalOrgansSegApp))

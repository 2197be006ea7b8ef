"""``python -m monai_apps``: see :mod:`monai_apps.cli`."""

import resource
import sys

# Holoscan (imported by monai through monai-deploy-app-sdk) warns on every start when the stack limit is
# below 32 MiB; raise the soft limit for this process when the hard limit allows it.
_soft, _hard = resource.getrlimit(resource.RLIMIT_STACK)
_want = 32 * 1024 * 1024
if _soft != resource.RLIM_INFINITY and _soft < _want and (_hard == resource.RLIM_INFINITY or _hard >= _want):
    resource.setrlimit(resource.RLIMIT_STACK, (_want, _hard))

from monai_apps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

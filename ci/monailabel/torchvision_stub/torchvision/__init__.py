"""Not torchvision: a stub for the MONAI Label side environment (see ci/monailabel/setup_env.sh).

``monailabel.transform.post`` does ``from torchvision.utils import make_grid, save_image`` at import time, and PyPI's
torchvision wheel (a CUDA build) fails to import with the CPU torch (``operator torchvision::nms does not exist``).
The two names exist here so the import succeeds; calling them raises, so nothing silently does less than the real
library. A machine that reaches https://download.pytorch.org/whl/cpu should install the real CPU build instead.
"""

__version__ = "0.0.0+cpustub"

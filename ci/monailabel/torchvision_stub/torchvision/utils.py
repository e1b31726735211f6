"""The two ``torchvision.utils`` names MONAI Label imports; both raise when called."""

_MESSAGE = (
    "torchvision stub (xlstm-seg ci/monailabel): {name} is not available. MONAI Label only calls it to dump debug "
    "PNGs; install the real CPU torchvision (pip install torchvision --index-url https://download.pytorch.org/whl/cpu)."
)


def make_grid(*args, **kwargs):
    raise NotImplementedError(_MESSAGE.format(name="make_grid"))


def save_image(*args, **kwargs):
    raise NotImplementedError(_MESSAGE.format(name="save_image"))

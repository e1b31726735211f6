#!/usr/bin/env bash
# Build a side environment with the real MONAI Label 0.8.5 next to this repository's package, on a CPU machine.
#
#   ci/monailabel/setup_env.sh [SIDE_DIR] [MONAI_VERSION]       (defaults: /work/side/clinic 1.6.1)
#
# Creates SIDE_DIR/venv-monai<MONAI_VERSION>. Never touches the repository's own .venv.
# - torch==2.13.0 is pinned in the constraints file used by every pip line: any other torch requirement
#   (monailabel -> sam2, numpymaxflow) would pull a CUDA torch and several GB of CUDA packages.
# - numpy<2 and pydicom<3: MONAI Label 0.8.5 needs them (numpymaxflow, pydicom-seg); our main stack uses numpy 2,
#   which is why MONAI Label lives in its own environment.
# - torchvision: PyPI's wheel is a CUDA build; with the CPU torch `import torchvision` raises
#   "operator torchvision::nms does not exist", and monailabel.transform.post imports torchvision.utils at module
#   level. On a machine that reaches the PyTorch CPU index, install the real CPU build instead of the stub:
#       pip install torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu
#   Here that index is unreachable and no CPU torchvision wheel exists locally, so this script replaces the broken
#   wheel with ci/monailabel/torchvision_stub (make_grid/save_image raise; MONAI Label only uses them to dump debug
#   PNGs in DumpImagePrediction2Dd, which the bundle tasks never run). The stub is installed only in SIDE_DIR.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SIDE="${1:-/work/side/clinic}"
MONAI_VERSION="${2:-1.6.1}"
PYTHON="${PYTHON:-python3}"
VENV="$SIDE/venv-monai$MONAI_VERSION"
mkdir -p "$SIDE"
SIDE="$(cd "$SIDE" && pwd)"
VENV="$SIDE/venv-monai$MONAI_VERSION"

CONSTRAINTS="$SIDE/constraints-monai$MONAI_VERSION.txt"
cat > "$CONSTRAINTS" <<CONS
torch==2.13.0
monai==$MONAI_VERSION
monailabel==0.8.5
numpy<2
pydicom<3
CONS

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
"${PIP[@]}" install torch==2.13.0 -c "$CONSTRAINTS"
"${PIP[@]}" install "monai==$MONAI_VERSION" monailabel==0.8.5 torch==2.13.0 -c "$CONSTRAINTS"
# our package without its dependency pins (it declares monai>=1.6; the 1.4 environment is tested on purpose) plus
# the few runtime dependencies monailabel does not already bring
"${PIP[@]}" install --no-deps -e "$REPO"
"${PIP[@]}" install "triton>=3.5,<3.9" "matplotlib>=3.7" torch==2.13.0 -c "$CONSTRAINTS"

# torchvision: keep a working build, otherwise replace the CUDA wheel with the stub
if ! "$VENV/bin/python" -c "import torchvision.utils" >/dev/null 2>&1; then
    "${PIP[@]}" uninstall -y torchvision
    "${PIP[@]}" install --no-deps "$REPO/ci/monailabel/torchvision_stub"
fi

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import monai, numpy, torch, torchvision
import monailabel.tasks.infer.bundle  # noqa: F401  (fails without a loadable torchvision)
import monailabel.tasks.train.bundle  # noqa: F401
print(f"monailabel {md.version('monailabel')}  monai {monai.__version__}  torch {torch.__version__}  "
      f"numpy {numpy.__version__}  pydicom {md.version('pydicom')}  itk {md.version('itk')}  "
      f"torchvision {torchvision.__version__}")
PY
echo "$VENV"

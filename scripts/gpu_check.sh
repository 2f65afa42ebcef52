#!/usr/bin/env bash
# The GPU check, as one command for a 15-minute lease on a fresh NVIDIA H100/H200 machine without internet
# (under 8 minutes in all: the step timeouts add up to 470 s):
#   1. what is there: the GPU, the Python that holds torch, the imports the project needs;
#   2. the project installed with `pip install --no-deps --no-build-isolation -e .`, only if it is not importable;
#   3. the CUDA tests: pytest -m gpu (tests/test_gpu.py);
#   4. the CUDA parts of the benchmark: scripts/bench.py --device cuda.
# The benchmark's JSON and Markdown, the test log and this script's log go to $OUT when set, else outputs/bench.
#
# Python packages the machine lacks travel as wheels in .whl/ and are installed to /tmp/site first. Needed:
# omegaconf and antlr4-python3-runtime (pure Python: `pip wheel --no-deps "omegaconf>=2.3,<2.4"
# antlr4-python3-runtime==4.9.3 -w .whl` builds them); optional: faiss-cpu (`pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 faiss-cpu -d .whl`), without which
# the benchmark runs `ours` with the torch k-means and says so.
#
# Usage: bash scripts/gpu_check.sh            (PYTHON=/path/to/python to choose the interpreter)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HF_HUB_OFFLINE=1 WANDB_MODE=disabled MPLBACKEND=Agg PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10
OUT_DIR="${OUT:-outputs/bench}"
mkdir -p "$OUT_DIR"
exec > >(tee -a "$OUT_DIR/gpu_check.log") 2>&1

if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c "import torch" 2>/dev/null; then
  PY=.venv/bin/python
else
  PY=python3
fi
case "$PY" in  # absolute: a step runs from another folder
  /*) ;;
  */*) PY="$PWD/$PY" ;;
  *) PY=$(command -v "$PY") ;;
esac
failed=()
last_rc=0

step() {  # step NAME SECONDS COMMAND...: say what runs, run it under a timeout, time it; sets last_rc, notes failures
  local name=$1 limit=$2 start=$SECONDS shown
  shift 2
  shown="$*"
  echo
  echo "=== [$(date +%H:%M:%S)] $name (timeout ${limit}s): ${shown%%$'\n'*}"
  last_rc=0
  timeout "$limit" "$@" || last_rc=$?
  echo "=== $name: exit $last_rc after $((SECONDS - start)) s$( ((last_rc == 124)) && echo ' (timed out)')"
  ((last_rc == 0)) || failed+=("$name")
}

step "GPU" 15 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

if compgen -G ".whl/*.whl" >/dev/null; then
  step "carried wheels" 30 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

step "torch and CUDA" 30 "$PY" -c "
import torch
print('python', __import__('sys').version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda)
assert torch.cuda.is_available(), 'torch sees no GPU'
print('device:', torch.cuda.get_device_name())"
if ((last_rc != 0)); then
  echo "no usable CUDA torch with $PY: stopping"
  exit 1
fi

if ! (cd /tmp && "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('imprint_bench') is None)"); then
  step "install the project" 35 "$PY" -m pip install -q --no-deps --no-build-isolation -e .
  if ((last_rc != 0)); then
    echo "pip could not install the project: using PYTHONPATH=$PWD instead"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi

step "dependencies" 20 "$PY" -c "
import importlib.util, sys
need = ['omegaconf', 'antlr4', 'yaml', 'torchvision', 'timm', 'sklearn', 'tqdm', 'safetensors', 'pytest']
optional = ['faiss']
for name in need + optional:
    print(f'{name:12s}', 'ok' if importlib.util.find_spec(name) else 'MISSING' + (' (optional)' if name in optional else ''))
missing = [n for n in need if importlib.util.find_spec(n) is None]
sys.exit(f'missing {missing}: carry their wheels in .whl/ (see the top of this script)' if missing else 0)"
if ((last_rc != 0)); then
  exit 1
fi

step "CUDA tests" 60 "$PY" -m pytest tests/test_gpu.py -m gpu -p no:cacheprovider -q -rA \
  --junitxml="$OUT_DIR/pytest_gpu.xml"

# engine first, then extraction (bf16/channels_last are GPU-only): a timeout keeps what was written so far
step "benchmark on CUDA" 280 "$PY" scripts/bench.py --device cuda --suite engine,extract,kmeans,memory --out "$OUT_DIR"

echo
echo "=== files in $OUT_DIR:"
ls -l "$OUT_DIR"
if ((${#failed[@]})); then
  echo "=== FAILED: ${failed[*]}"
  exit 1
fi
echo "=== all steps passed"

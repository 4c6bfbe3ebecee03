#!/usr/bin/env bash
# One prepared check for a CUDA machine (written for one H200; about 5-8 minutes there).
#
# Run from the repository root with OUT set to an empty folder that comes back:
#   OUT=/some/dir bash scripts/gpu_check.sh
# The machine needs python3 with a CUDA build of torch, pytest, numpy and matplotlib. The Jupyter
# stack (nbval, nbclient, nbformat, ipykernel, ipywidgets, ...) comes as wheels in .whl/ and is
# installed to /tmp/site (no registry needed).
#
# Steps, each under its own time limit so that the outputs of the others still come back:
#   1. environment (GPU, driver, torch, CUDA, C compiler for torch.compile)  -> $OUT/env.txt
#   2. tests/test_timing.py, whose CUDA tests run on a GPU                    -> $OUT/test-timing.log
#   3. nbval of every chapter and solution notebook (requires-cuda cells run) -> $OUT/nbval-gpu.log
#   4. benchmarks/buffer_timing.py with its targets                           -> $OUT/bench.txt, bench.json
#   5. chapters/05_cuda_timing_lab.ipynb executed with nbclient, GPU cells included (outputs to
#      commit; written even when a cell fails)                                -> $OUT/05_cuda_timing_lab.ipynb,
#                                                                                $OUT/execute.log
# The exit status is that of the first failing step (0 when all pass).
set -u -o pipefail
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
status=0
step() { local rc=$1 name=$2; echo "== $name: exit $rc"; if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi; }

# 0. the Jupyter stack from the carried wheels (the machine's own pytest and friends are kept)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $(ls .whl/*.whl | grep -v -e pytest- -e pluggy -e iniconfig -e packaging -e psutil -e coverage -e pygments -e typing_extensions -e attrs) && export PYTHONPATH=/tmp/site:$PWD/src
step $? "install wheels"
export PYTHONPATH=${PYTHONPATH:-/tmp/site:$PWD/src}
export MPLBACKEND=Agg

# 1. environment
{
  date -u +"%Y-%m-%d %H:%M:%S UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
  python3 -c "import sys, torch; print('Python', sys.version.split()[0]); print('torch', torch.__version__, 'CUDA', torch.version.cuda); print('device', torch.cuda.get_device_name(0)); print('L2 bytes', torch.cuda.get_device_properties(0).L2_cache_size)"
  python3 -c "import triton; print('triton', triton.__version__)" || echo "triton: not importable (torch.compile cells will fail)"
  echo "C compiler: $(command -v cc || command -v gcc || echo none)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 2. the timing module's tests, CUDA ones included
timeout 150 python3 -m pytest -p no:cacheprovider -q tests/test_timing.py 2>&1 | tee "$OUT/test-timing.log"
step $? "tests/test_timing.py"

# 3. nbval: every chapter and solution notebook, requires-cuda cells included
timeout 270 python3 -m pytest --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg \
    -p no:cacheprovider chapters/ solutions/ 2>&1 | tee "$OUT/nbval-gpu.log"
step $? "nbval chapters/ solutions/"

# 4. the benchmark, full GPU sizes
timeout 120 python3 benchmarks/buffer_timing.py --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
step $? "benchmarks/buffer_timing.py"

# 5. chapter 5 executed on the GPU (on a CPU, scripts/execute_notebooks.py skips requires-cuda cells
#    here nothing is skipped), written to $OUT even if a cell fails
timeout 180 python3 - "$OUT" <<'PY' 2>&1 | tee "$OUT/execute.log"
import os, sys, traceback
import nbformat
from nbclient import NotebookClient

out = sys.argv[1]
path = "chapters/05_cuda_timing_lab.ipynb"
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                        skip_cells_with_tag="never-skip-on-the-gpu-run",
                        resources={"metadata": {"path": "chapters"}})
rc = 0
try:
    client.execute()
    print("executed", path)
except Exception:
    traceback.print_exc(limit=1)
    rc = 1
nbformat.write(nb, os.path.join(out, "05_cuda_timing_lab.ipynb"))
print("wrote", os.path.join(out, "05_cuda_timing_lab.ipynb"))
sys.exit(rc)
PY
step $? "execute chapter 5"

echo "== overall exit $status"
exit $status

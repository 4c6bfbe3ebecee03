#!/usr/bin/env bash
# One prepared check for a CUDA machine (written for one H200): run it as ONE command there.
#
#   OUT=/some/dir bash scripts/gpu_check.sh        # OUT: an empty folder that comes back
#
# The machine needs python3 with a CUDA build of torch, pytest, numpy and matplotlib. The Jupyter
# stack (nbval, nbclient, nbformat, ipykernel, ipywidgets and their dependencies) comes as wheels
# in .whl/ (git-ignored; carry it with the tree), installed to /tmp/site, no registry needed.
# Prepare .whl/ once on a machine that has the registry (Python 3.12 wheels for the GPU box):
#   python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl nbval==0.11.0 ipykernel ipywidgets nbclient nbformat
#
# Steps, most valuable first. The whole script keeps within GPU_CHECK_BUDGET_S seconds (default
# 540, under a 10-minute command limit): each step gets its own limit, cut to what is left, so
# a slow step never costs the outputs of the ones before it.
#   1. environment: GPU, driver, torch, CUDA, triton, C compiler           -> summary.log
#   2. every chapter with `requires-cuda` cells (today chapters 2, 3, 5, 6) executed with nbclient,
#      CUDA cells included; written even when a cell fails (allow_errors)  -> notebooks/*.ipynb,
#                                                                             execute.log
#   3. benchmarks/buffer_timing.py --json: tables and the targets of
#      bufferbook.timing.targets, PASS or FAIL                             -> bench.json, summary.log
#   4. tests/test_timing*.py, the CUDA tests included                      -> checks.log
#   5. nbval of the chapters of step 2 with REQUIRE_CUDA=1 (CUDA cells run) -> checks.log
# That is 4 files plus one notebook per chapter: at most 8 come back, so 4 chapters at most
# (the script stops before running when there are more).
# The executed notebooks are what to commit after review (scripts/execute_notebooks.py keeps
# GPU outputs on later CPU runs). The exit status is that of the first failing step.
set -u -o pipefail
OUT=${OUT:-$PWD/gpu-check-out}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
mkdir -p "$OUT/notebooks"
SUMMARY="$OUT/summary.log"
: > "$SUMMARY"
status=0

log() { echo "$*" | tee -a "$SUMMARY"; }
step() {  # step RC NAME: record a step's exit status; keep the first failure
    local rc=$1 name=$2
    log "== $name: exit $rc (after ${SECONDS}s)"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}
limit() {  # limit MAX: seconds for the next step, at most MAX, at most what is left (min 1)
    local left=$((BUDGET - SECONDS))
    if [ "$left" -lt 1 ]; then left=1; fi
    if [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}

# 0. the Jupyter stack from the carried wheels (the machine's own pytest and friends are kept)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site $(ls .whl/*.whl | grep -v -e pytest- -e pluggy -e iniconfig -e packaging \
    -e psutil -e coverage -e pygments -e typing_extensions -e attrs) >> "$SUMMARY" 2>&1
step $? "install wheels from .whl/"
export PYTHONPATH=/tmp/site:$PWD/src
export MPLBACKEND=Agg

# 1. environment
{
    date -u +"%Y-%m-%d %H:%M:%S UTC"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
        --format=csv || true
    python3 - <<'PY'
import sys, torch
print("Python", sys.version.split()[0])
print("torch", torch.__version__, "CUDA", torch.version.cuda)
print("device", torch.cuda.get_device_name(0))
print("L2 bytes", torch.cuda.get_device_properties(0).L2_cache_size)
PY
    python3 -c "import triton; print('triton', triton.__version__)" \
        || echo "triton: not importable (torch.compile cells will fail)"
    echo "C compiler: $(command -v cc || command -v gcc || echo none)"
} 2>&1 | tee -a "$SUMMARY"

# the chapters with requires-cuda cells (bufferbook.cuda_cells decides what is one)
CHAPTERS=$(python3 - <<'PY'
import glob
import nbformat
from bufferbook.cuda_cells import is_cuda_cell
for path in sorted(glob.glob("chapters/*.ipynb")):
    if any(is_cuda_cell(c) for c in nbformat.read(path, as_version=4).cells):
        print(path)
PY
)
log "chapters with CUDA cells: $(echo $CHAPTERS)"
if [ "$(echo $CHAPTERS | wc -w)" -gt 4 ]; then
    log "more than 4 chapters: their notebooks and the 4 logs would not all come back"
    exit 2
fi

# 2. execute those chapters on the GPU; every notebook is written, errors and all
timeout "$(limit 300)" python3 - "$OUT/notebooks" $CHAPTERS <<'PY' 2>&1 | tee "$OUT/execute.log"
import os, sys, time
import nbformat
from nbclient import NotebookClient
from bufferbook.cuda_cells import has_gpu_output, is_cuda_cell

out, paths = sys.argv[1], sys.argv[2:]
failed = 0
for path in paths:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                            record_timing=False, allow_errors=True,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    start = time.time()
    try:
        client.execute()
    except Exception as exc:  # a cell timeout or a dead kernel: keep what ran
        print(f"{path}: {type(exc).__name__}: {str(exc)[-1000:]}")
        failed += 1
    errors = [i for i, c in enumerate(nb.cells)
              if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    cuda = [i for i, c in enumerate(nb.cells) if is_cuda_cell(c)]
    no_gpu = [i for i in cuda if not has_gpu_output(nb.cells[i])]
    print(f"{path}: {time.time() - start:.0f} s; cells with errors: {errors}; "
          f"CUDA cells: {cuda}; CUDA cells without GPU output: {no_gpu}")
    failed += bool(errors or no_gpu)
    nbformat.write(nb, os.path.join(out, os.path.basename(path)))
    print("wrote", os.path.join(out, os.path.basename(path)), flush=True)
sys.exit(1 if failed else 0)
PY
step $? "execute chapters with CUDA cells"

# 3. the benchmark, full GPU sizes, with the targets of bufferbook.timing.targets
timeout "$(limit 120)" python3 benchmarks/buffer_timing.py --json "$OUT/bench.json" \
    >> "$SUMMARY" 2>&1
step $? "benchmarks/buffer_timing.py"

# 4. the timing package's tests, CUDA ones included
CHECKS="$OUT/checks.log"
echo "== tests/test_timing*.py" > "$CHECKS"
timeout "$(limit 120)" python3 -m pytest -p no:cacheprovider -q -rs tests/test_timing*.py \
    >> "$CHECKS" 2>&1
step $? "tests/test_timing*.py"
tail -3 "$CHECKS" | tee -a "$SUMMARY"

# 5. nbval of the same chapters: CUDA cells must run, not skip (REQUIRE_CUDA=1, conftest.py)
echo "== nbval with REQUIRE_CUDA=1: $(echo $CHAPTERS)" >> "$CHECKS"
REQUIRE_CUDA=1 timeout "$(limit 240)" python3 -m pytest -p no:cacheprovider -q -rs --nbval \
    --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg $CHAPTERS \
    >> "$CHECKS" 2>&1
step $? "nbval with CUDA: $(echo $CHAPTERS)"
tail -3 "$CHECKS" | tee -a "$SUMMARY"

log "== overall exit $status after ${SECONDS}s"
exit $status

#!/usr/bin/env bash
# Everything a GPU machine should check, in one call (a lent GPU's time is short):
#   bash bench/gpu_check.sh [OUT]      (OUT: default runs/gpu_check; on the device machine, "$OUT")
# Without a GPU the CUDA parts are skipped, saying so, and the CPU parts still run: this script's own
# plumbing, the CUDA tests' skips, and a CPU twin of the engine check.
# Sections: the machine; the CUDA tests; every example's quick run (the tour) on cuda; the VAE's MNIST
# epoch time; the SVI scale bench and the VAE throughput bench on cuda; PacGAN's protocol at 2.5% of its
# budget on cuda; the compiled engine on CUDA (Inductor: it must work or decline loudly). Each section prints its wall time; a failing section is
# reported and the script goes on, and exits non-zero at the end if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
failed=()

section() {  # section NAME COMMAND...: run it, time it, keep its output under $OUT
  local name="$1"; shift
  echo "=== $name: $*"
  local start=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status="FAILED ($?)"; failed+=("$name"); fi
  tail -n 25 "$OUT/$name.log"
  echo "=== $name: $status in $((SECONDS - start)) s"
}

if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  GPU=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
else
  GPU=0
  echo "no CUDA device: the cuda sections are skipped"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

section cuda_tests "$PY" -m pytest -q -p no:cacheprovider -m "gpu or not gpu" tests/test_cuda.py
if [ "$GPU" = 1 ]; then
  section tour_cuda "$PY" -m deepprob tour --quick --device cuda --out "$OUT/tour"
  section vae_mnist_epoch "$PY" -m deepprob vae --dataset mnist --epochs 1 --device cuda --json --quiet \
    --out "$OUT/vae_mnist"
  section engine_compiled_cuda "$PY" -m deepprob logreg --device cuda --engine compiled --guide meanfield --json \
    --quiet --out "$OUT/logreg_cuda"
  section scale_bench_cuda "$PY" bench/scale.py --device cuda --rows 10000,1000000 --repeats 1 --accuracy-rows 0
  section vae_bench_cuda "$PY" bench/vae_throughput.py --device cuda --epochs 2
  # PacGAN's protocol (Table 1) on the GPU: its step against a plain loop, and its ms an iteration, which
  # say whether the full 400,000-iteration protocol fits there (it takes ~2 h a trial on one CPU core)
  section pacgan_protocol_cuda "$PY" bench/mode_coverage.py --protocol pacgan --device cuda --budget 0.025 \
    --trials 2 --methods standard,pack4 --datasets grid --throughput-blocks 3
else
  section engine_compiled_cpu "$PY" -m deepprob logreg --engine compiled --guide meanfield --steps 2000 --json \
    --quiet --out "$OUT/logreg_cpu"
fi
if [ ${#failed[@]} -gt 0 ]; then echo "failed sections: ${failed[*]}"; exit 1; fi
echo "all sections passed"

#!/usr/bin/env bash
# The GPU measurements, in one go, on a machine with a CUDA GPU, its own PyTorch and
# no package index. FILES (default: offline/ in the repository root, git-ignored)
# holds the pyro-ppl and pyro-api wheels (pip download --no-deps pyro-ppl pyro-api)
# and Fashion-MNIST's four .gz files in FILES/FashionMNIST/raw/. In about 5 minutes
# on an H200 it appends to benchmarks/RESULTS.md (and to $OUT/gpu-results.md when
# $OUT is set):
#   - images/s, operators and host reads per step and the fraction of the device's
#     peak of the level-synchronous RNP (eager and CUDA graph), the depth-first
#     reference and the conv VAE, at 3 (fashion) and 4 (fashion4) levels;
#   - one fashion epoch (the README's main job) eager and with the captured step:
#     training seconds, test MSE and ELBO;
#   - with two or more GPUs, the same epoch in two NCCL processes.
#
#     bash benchmarks/gpu.sh [FILES]
# DEVICE=cpu MAX_STEPS=20 STEPS=3 RESULTS=/tmp/x.md run it on a CPU, as a quick check of it.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(realpath "${1:-offline}")
device=${DEVICE:-cuda}
steps=${STEPS:-50}
limit=${MAX_STEPS:+--max-steps $MAX_STEPS}
work=$(mktemp -d)
python=${PYTHON:-python3}

$python -m pip install -q --no-index --no-deps "$files"/pyro_api-*.whl "$files"/pyro_ppl-*.whl
$python -m pip install -q --no-index --no-deps --no-build-isolation -e .
export RNP_PYRO_DATA=$files

report=$work/gpu-results.md
gpus=$($python -c "import torch; print(torch.cuda.device_count())")
name=$($python -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')")
case "$name" in  # dense fp32 peak (no tensor cores), for the fraction of peak
  *H100*|*H200*) peak=(--peak-tflops 67) ;;
  *) peak=() ;;
esac

epoch() {  # LABEL, then fit options: one fashion epoch; its row of the table
  local label=$1; shift
  local out=$work/$(echo "$label" | tr -c 'a-z0-9' '-')
  $python -c "from rnp_pyro.cli import main; main()" fit --dataset fashion --epochs 1 --lr 1e-3 --device "$device" --no-progress \
      $limit --out "$out" "$@" > /dev/null
  $python - "$out" "$label" <<'EOF'
import sys
from rnp_pyro.run import read_metrics
row = read_metrics(sys.argv[1])[-1]
print(f"| {sys.argv[2]} | {row['step']} | {row['seconds']:.1f} | {row['test_mse']:.4f} "
      f"| {row['test_elbo']:.1f} |")
EOF
}

{
  echo
  echo "### GPU: $name, $(date -u +%F)"
  echo
  echo "\`bash benchmarks/gpu.sh\`: torch $($python -c 'import torch; print(torch.__version__)'), $gpus GPU(s)."
  echo
  echo "Training throughput at batch 64 (\`benchmarks/throughput.py --device $device --cuda-graphs --steps $steps\`):"
  echo
  $python benchmarks/throughput.py --device "$device" --presets fashion,fashion4 --steps "$steps" \
      --cuda-graphs "${peak[@]}" | grep '^|'
  echo
  echo "One fashion epoch (\`rnp-pyro fit --dataset fashion --epochs 1 --lr 1e-3 --device $device\`; seconds of training, without the test evaluation):"
  echo
  echo "| step | steps | seconds | test MSE | test ELBO |"
  echo "|---|---|---|---|---|"
  epoch "eager"
  epoch "CUDA graph" --speed cuda_graphs=on
  if [ "$gpus" -ge 2 ]; then
    epoch "2 NCCL processes, batch 64 each" --devices 2
  fi
} | tee "$report"

cat "$report" >> "${RESULTS:-benchmarks/RESULTS.md}"
if [ -n "${OUT:-}" ]; then cp "$report" "$OUT/"; fi
rm -rf "$work"

#!/usr/bin/env bash
# GPU sharing: what --gpus-per-trial 1/k buys. Runs k = 1, 2, 4, 8 copies of the trainable (default
# CNN, batch 128, 15 epochs, different seeds) on one GPU at once and prints each k's summed images/s;
# the ratio to k=1 is the gain. Needs a CUDA GPU and 16 CPU cores (torch threads 16/k per trial).
#   bash bench/gpu_sharing.sh ../shared/data/cifar-10-batches-py   # from the repository root
set -euo pipefail
export PYTHONPATH="${PYTHONPATH:-$PWD}"
D=${1:-${CIFAR10_DIR:?pass the cifar-10-batches-py folder or set CIFAR10_DIR}}; E=15
echo "machine: $(nvidia-smi --query-gpu=name --format=csv,noheader), $(nproc) CPU cores; n = 1 run per k, images/s = median over epochs 3-$E"
for k in 1 2 4 8; do
  out=$(mktemp -d); start=$(date +%s.%N)
  for i in $(seq 1 $k); do
    python3 -m trainables.cifar --device cuda --epochs $E --data-dir $D --output $out/$i --num-threads $((16 / k)) --set seed=$i >/dev/null 2>&1 &
  done
  wait; end=$(date +%s.%N)
  python3 - "$k" "$start" "$end" "$out" <<'PY'
import json, sys, glob, statistics
k, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
per = []
for f in sorted(glob.glob(sys.argv[4] + "/*/metrics.jsonl")):
    rows = [json.loads(l) for l in open(f) if l.strip()]
    per.append(statistics.median(r["images_per_s"] for r in rows[2:]))
print(f"k={k} trials sharing the GPU: {len(per)} finished, median per-trial {statistics.median(per):.0f} img/s, "
      f"sum {sum(per):.0f} img/s; wall {end-start:.1f}s for {k} x 15 epochs")
PY
done

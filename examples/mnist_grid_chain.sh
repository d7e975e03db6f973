#!/usr/bin/env bash
# Re-create the issue-4 MNIST grid rule (docs/results/meta_mlp.md: stage 1 to 24,000 meta-steps by
# resumes, then stage 2), one core.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
neuralgraph meta-train examples/mnist_grid_fast.yaml
neuralgraph meta-train examples/mnist_grid_fast.yaml --resume --set train.meta_steps=6000
neuralgraph meta-train examples/mnist_grid_fast.yaml --resume --set train.meta_steps=12000
mkdir -p runs/mnist_grid_fast_24k
cp runs/mnist_grid_fast/checkpoint.pt runs/mnist_grid_fast_24k/
neuralgraph meta-train examples/mnist_grid_fast.yaml --resume --set train.meta_steps=24000 --set train.out_dir=runs/mnist_grid_fast_24k
neuralgraph meta-train examples/mnist_grid_fast_stage2.yaml
echo CHAIN DONE

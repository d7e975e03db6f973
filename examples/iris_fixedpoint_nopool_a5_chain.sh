#!/bin/bash
# Issue 4 stability ablation for the shipped fixed-point rule (mlp_iris_fixedpoint.pt = iris_fixedpoint_a5): every
# stage of its chain (iris_stable 1, 2, 3b, then iris_fixedpoint_a, a2, a3, a4, a5) without a sample pool, each
# stage with the settings, seed and meta-steps of its pooled counterpart. a2-a5 took 3,313 s on one core (2026-12-07).
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
[ -f runs/iris_fixedpoint_nopool_a/rule.pt ] || bash examples/iris_fixedpoint_nopool_chain.sh
prev=runs/iris_fixedpoint_nopool_a
for stage in a2 a3 a4 a5; do
  out=runs/iris_fixedpoint_nopool_$stage
  [ -f $out/rule.pt ] || nice -n 5 neuralgraph meta-train examples/iris_fixedpoint_$stage.yaml --set train.pool_size=0 \
      --set train.init_rule=$prev/rule.pt --set train.out_dir=$out
  prev=$out
done

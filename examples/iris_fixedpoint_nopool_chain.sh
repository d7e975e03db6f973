#!/bin/bash
# Issue 4 stability ablation for the fixed-point rule (examples/iris_fixedpoint_a.yaml): the three iris_stable
# stages and the fixed-point stage, all without a sample pool (the first three as iris_stable_nopool_chain.sh).
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
[ -f runs/iris_stable_nopool_stage3b/rule.pt ] || bash examples/iris_stable_nopool_chain.sh
nice -n 5 neuralgraph meta-train examples/iris_fixedpoint_a.yaml --set train.pool_size=0 --set train.init_rule=runs/iris_stable_nopool_stage3b/rule.pt --set train.out_dir=runs/iris_fixedpoint_nopool_a

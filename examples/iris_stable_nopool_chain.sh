#!/bin/bash
# Issue 4 stability ablation: the three iris_stable stages without a sample pool (session 22 re-run).
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
nice -n 5 neuralgraph meta-train examples/iris_stable.yaml --set train.pool_size=0 --set train.out_dir=runs/iris_stable_nopool
nice -n 5 neuralgraph meta-train examples/iris_stable_stage2.yaml --set train.pool_size=0 --set train.init_rule=runs/iris_stable_nopool/rule.pt --set train.out_dir=runs/iris_stable_nopool_stage2
nice -n 5 neuralgraph meta-train examples/iris_stable_stage3b.yaml --set train.pool_size=0 --set train.init_rule=runs/iris_stable_nopool_stage2/rule.pt --set train.out_dir=runs/iris_stable_nopool_stage3b

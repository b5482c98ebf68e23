#!/bin/bash
# Issue 30: seconds per outer iteration of every method on the small reference protocol, and of the published code,
# in one sitting on the otherwise idle machine, one thread (as the training runs had), l2l from the snapshot the
# runs used (snap4) . Writes /work/runs/timing/sitting/*.
set -u
OUT=/work/runs/timing/sitting; mkdir -p $OUT
lscpu | grep -E "Model name|^CPU\(s\)" > $OUT/cpu.txt
uptime > $OUT/uptime_before.txt
cd /work/runs/snap4
P=/work/main/.venv/bin/python
$P -c "from l2l.outer_loop.bench.profile_meta import gemm_flops_per_second as g; import torch; torch.set_num_threads(1); print(g())" > $OUT/gemm_1thread.txt
for inner in eprop2 maml maml_first_order eprop1_symmetric eprop1_random; do
  if [ $inner = eprop2 ]; then flags=""; else flags="inner=$inner inner.lr=0.01 inner.lr_mode=per_layer error_module.in_test_trial=false"; fi
  $P -m l2l.outer_loop.bench.cli meta --experiment arm_one_shot_reference --iterations 10 --threads 1 --json $flags > $OUT/l2l_$inner.json 2> $OUT/l2l_$inner.err
done
cd /work/runs/timing/published
TF_USE_LEGACY_KERAS=1 /work/tfvenv/bin/python tutorial_eprop2.py --do_plot=False --threads 1 --seed 1 \
    --n_rec_network 100 --n_rec_error_module 100 --batch_size 32 --n_iter 12 > $OUT/published.log 2>&1
cd /work/runs/snap4
$P -m l2l.outer_loop.bench.cli meta --experiment arm_one_shot_reference --iterations 10 --threads 1 --json > $OUT/l2l_eprop2_again.json 2>&1
uptime > $OUT/uptime_after.txt
echo done > $OUT/finished

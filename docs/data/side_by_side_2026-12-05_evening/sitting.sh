#!/bin/bash
# Issue 34, this session: one sitting on the otherwise idle machine: the published code, l2l at the start of this
# session (1d6e3a7, snap_before) and l2l now (snap_now), small reference protocol and paper sizes, 2 threads (and 1).
set -u
OUT=/work/runs/timing35/out_final; mkdir -p $OUT
P=/work/main/.venv/bin/python
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-200 > $OUT/cpu.txt
uptime > $OUT/uptime_before.txt
for th in 1 2; do
  $P -c "from l2l.outer_loop.bench.profile_meta import gemm_flops_per_second as g; import torch; torch.set_num_threads($th); print(g())" > $OUT/gemm_${th}thread.txt
done
SMALL="network.n_hidden=100 error_module.n_hidden=100 outer.batch_size=32"
for th in 2 1; do
  for v in before now; do
    d=/work/runs/snap_now; [ $v = before ] && d=/work/runs/snap_before
    (cd $d && $P -m l2l.outer_loop.bench.cli meta --experiment arm_one_shot_paper --iterations 10 --threads $th --json $SMALL > $OUT/l2l_${v}_small_${th}t.json 2> $OUT/l2l_${v}_small_${th}t.err)
  done
done
for v in before now; do
  d=/work/runs/snap_now; [ $v = before ] && d=/work/runs/snap_before
  (cd $d && /usr/bin/time -f "max_rss_kib %M" -o $OUT/l2l_${v}_paper_2t.rss $P -m l2l.outer_loop.bench.cli meta --experiment arm_one_shot_paper --iterations 3 --threads 2 --json > $OUT/l2l_${v}_paper_2t.json 2> $OUT/l2l_${v}_paper_2t.err)
done
cd /work/runs/timing/published
for th in 2 1; do
  TF_USE_LEGACY_KERAS=1 /work/tfvenv/bin/python tutorial_eprop2.py --do_plot=False --threads $th --seed 1 \
      --n_rec_network 100 --n_rec_error_module 100 --batch_size 32 --n_iter 12 > $OUT/published_small_${th}t.log 2>&1
done
TF_USE_LEGACY_KERAS=1 /usr/bin/time -f "max_rss_kib %M" -o $OUT/published_paper_2t.rss /work/tfvenv/bin/python tutorial_eprop2.py --do_plot=False --threads 2 --seed 1 --n_iter 4 > $OUT/published_paper_2t.log 2>&1
cd /work/runs/snap_now
$P -m l2l.outer_loop.bench.cli meta --experiment arm_one_shot_paper --iterations 10 --threads 2 --json $SMALL > $OUT/l2l_now_small_2t_again.json 2>&1
uptime > $OUT/uptime_after.txt
echo done > $OUT/finished

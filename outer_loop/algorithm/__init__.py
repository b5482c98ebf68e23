"""The e-prop 2 algorithm: the meta-learner, its outer objective, the outer step, meta-training and held-out
evaluation. It imports l2l, tasks, inner_loop and the shared ``l2l.outer_loop.checkpoint``, ``l2l.outer_loop.guard``
and ``l2l.outer_loop.optimizers`` only, never the app, the reports or the benchmarks (tests/test_layering.py)."""

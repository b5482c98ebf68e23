"""``l2l-bench``: timings of the core rules (``l2l.bench``) and of the e-prop 2 outer iteration; here
because it times app-level objects (configs, the meta-learner), which ``l2l`` may not import."""

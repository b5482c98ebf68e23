"""The e-prop 2 application, by role: ``algorithm`` (meta-learner, outer step, meta-training, evaluation),
``app`` (the ``l2l-train`` and ``l2l-verify`` commands and their wiring), ``reports`` (evaluation files, demos,
figures, shipped models) and ``bench`` (``l2l-bench``). ``checkpoint`` and ``optimizers`` are shared by all."""

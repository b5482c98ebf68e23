"""inner_loop: one-shot adaptation, demonstration -> learning signals -> e-prop update -> per-task weights.

``backends`` (the ways to run it: explicit, higher; one registry), ``one_shot`` (the explicit update and the
``Adaptation`` value), ``higher_backend``, ``learning_rates`` (η fixed or learned), ``settings``. The test trial
with the adapted weights is the outer objective's (``l2l.outer_loop.algorithm.objective``).
"""

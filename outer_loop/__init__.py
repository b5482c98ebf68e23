"""The `l2l-train` Hydra app: configs, direct training, loggers, plots (meta-training arrives here too)."""

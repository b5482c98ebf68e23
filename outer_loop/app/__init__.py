"""The command-line apps and their wiring: the Hydra app ``l2l-train`` (config schemas, builders,
loggers, direct training) and ``l2l-verify``."""

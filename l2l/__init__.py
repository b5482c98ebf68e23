"""l2l: learning-to-learn with eligibility propagation (e-prop)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("l2l")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0.0.0+unknown"

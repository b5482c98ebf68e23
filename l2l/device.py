"""Where tensors live: ``device=auto|cpu|cuda`` (or ``cuda:N``) from configs and command lines."""

from __future__ import annotations

import torch

from l2l.validation import InvalidValueError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<index>")


def resolve_device(name: str | torch.device, field: str = "device") -> torch.device:
    """``auto``: the first CUDA GPU if torch sees one, else the CPU; ``cpu``; ``cuda`` / ``cuda:N``.

    Raises ValueError naming ``field`` for anything else, or for a GPU this machine does not have.
    """
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"{field}={name!r} is not available here: torch sees no CUDA GPU; use auto or cpu")
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"{field}={name!r} is not available here: torch sees {torch.cuda.device_count()} GPU(s)")
        return torch.device(text)
    raise InvalidValueError(field, name, f": choose one of {', '.join(DEVICE_CHOICES)}")

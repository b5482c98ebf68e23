"""device=auto|cpu|cuda: resolution and clear errors."""

import pytest
import torch

from l2l.device import resolve_device


def test_auto_picks_cuda_only_when_torch_sees_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_names_the_field():
    with pytest.raises(ValueError, match=r"outer.device='cuda' is not available here"):
        resolve_device("cuda", "outer.device")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_device_lists_the_choices(bad):
    with pytest.raises(ValueError, match=r"is not allowed: choose one of auto, cpu, cuda"):
        resolve_device(bad, "device")

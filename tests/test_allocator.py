"""keep_freed_memory: applied where glibc is, a no-op when switched off."""

import subprocess
import sys

import pytest


def _run(code: str, env_extra: dict[str, str]) -> str:
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_keep_freed_memory_applies_on_glibc_and_can_be_switched_off():
    code = "from l2l.allocator import keep_freed_memory; print(keep_freed_memory())"
    import platform

    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert _run(code, {}) == expected
    assert _run(code, {"L2L_KEEP_FREED_MEMORY": "0"}) == "False"


def test_trials_stop_faulting_in_pages_after_keep_freed_memory():
    """A trial's freed buffers come back from the heap: page faults per trial drop from thousands to ~none."""
    code = """
import resource, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "1":
    from l2l.allocator import keep_freed_memory
    keep_freed_memory()
from l2l.network import RecurrentNetwork
net = RecurrentNetwork(20, 256, 2)
x = (torch.rand(16, 500, 20) < 0.05).float()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with torch.no_grad():
    net.run(x); net.run(x)
    before = faults()
    for _ in range(5):
        net.run(x)
print((faults() - before) // 5)
"""
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator settings are glibc's")
    per_trial = {}
    for flag in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, flag], env={**os.environ}, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        per_trial[flag] = int(out.stdout.strip())
    assert per_trial["0"] > 1000, per_trial  # the negative control: without it, every trial faults its buffers in
    # With it, a trial reuses the heap: ~0 faults here, but 400 were seen once in a CI run (cause not found);
    # a 10x drop is what the fix is for, and a no-op would give about the same count as without.
    assert per_trial["1"] * 10 < per_trial["0"], per_trial

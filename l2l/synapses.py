"""Synapses as tensors: the input they carry (shared (n, m) or per-task (B, n, m) weights) and the
sum over time that forms their updates, Σ_t post^t ⊗ pre^t."""

from __future__ import annotations

import torch


def synaptic_input(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_i W_ji x_i.

    x: (B, m) or (B, T, m); w: (n, m) shared, or (B, n, m) one matrix per task.
    Returns (B, n) or (B, T, n).
    """
    if w.dim() == 2:
        return x @ w.transpose(0, 1)
    if x.dim() == 2:
        return (x.unsqueeze(1) @ w.transpose(1, 2)).squeeze(1)
    return x @ w.transpose(1, 2)


def contract_over_time(post: torch.Tensor, pre: torch.Tensor, per_task: bool) -> torch.Tensor:
    """Σ_t post_j^t pre_i^t: post (B, T, n), pre (B, T, m) -> (n, m) summed over tasks or (B, n, m)."""
    if per_task:
        return post.transpose(1, 2) @ pre
    post_tm, pre_tm = post.transpose(0, 1), pre.transpose(0, 1)
    if post_tm.is_contiguous() or pre_tm.is_contiguous():  # time-major storage (a layer's records): no copy
        return post_tm.reshape(-1, post.shape[-1]).transpose(0, 1) @ pre_tm.reshape(-1, pre.shape[-1])
    return post.reshape(-1, post.shape[-1]).transpose(0, 1) @ pre.reshape(-1, pre.shape[-1])

"""The original's non-local attention written step by step (batched matmuls, explicit softmax),
as ``nonlocal_helper.spacetime_nonlocal`` computes it: the tests' reference for the fused kernel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlflow.models.nonlocal_block import NonLocalBlock


def reference_attend(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """The original's step-by-step computation (batched matmuls, explicit softmax)."""
    n, _, t, h, w = x.shape
    k = (1, block.pool_size, block.pool_size)
    pooled = F.max_pool3d(x, kernel_size=k, stride=k) if block.pool_size > 1 else x
    theta = block.theta(x).flatten(2)  # [N, d, L]
    phi = block.phi(pooled).flatten(2)  # [N, d, M]
    g = block.g(pooled).flatten(2)  # [N, d, M]
    affinity = torch.bmm(theta.transpose(1, 2), phi) * block.dim_inner**-0.5  # [N, L, M]
    prob = torch.softmax(affinity, dim=2)
    y = torch.bmm(g, prob.transpose(1, 2))  # [N, d, L]
    return y.reshape(n, block.dim_inner, t, h, w)

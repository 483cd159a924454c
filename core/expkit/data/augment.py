"""Augmentations that run on a whole batch at once (on the GPU when training there)."""

import torch
import torch.nn.functional as F
from torch import Tensor


def random_shift(x: Tensor, pad: int) -> Tensor:
    """Random translation by up to `pad` pixels (pad-and-crop), one offset per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflip(x: Tensor) -> Tensor:
    """Flip each sample left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(3), x)

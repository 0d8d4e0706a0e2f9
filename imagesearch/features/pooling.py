"""Global pooling of a conv feature map into one vector per image: average, max, GeM (SPEC §4).

GeM (generalised mean, Radenović et al. 2018) is `(mean(x^p))^(1/p)` over the spatial positions:
p = 1 is average pooling, p -> inf tends to max pooling, and a learnable p lets training choose.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["GeM", "POOLS", "build_pool", "gem"]


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the spatial dimensions.

    Args:
        x: (N, C, H, W) feature map; values are clamped to >= eps (GeM is defined on positive
            activations, e.g. after ReLU; the clamp also keeps the gradient of x^p finite at 0).
        p: the exponent, a float or a scalar tensor (learnable in `GeM`).
        eps: lower clamp.

    Returns:
        (N, C) pooled features.

    >>> gem(torch.tensor([[[[1.0, 8.0]]]]), p=1.0)  # p = 1: the mean
    tensor([[4.5000]])
    >>> round(gem(torch.tensor([[[[1.0, 8.0]]]]), p=3.0).item(), 4)  # ((1 + 512) / 2) ** (1/3)
    6.3537
    """
    if x.ndim != 4:
        raise ValueError(f"gem expects (N, C, H, W), got shape {tuple(x.shape)}")
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeM(nn.Module):
    """GeM pooling layer, (N, C, H, W) -> (N, C), with a learnable (or fixed) exponent `p`.

    Args:
        p: initial exponent (`gem_p` in configs); 3 is the usual start.
        eps: lower clamp of the activations.
        learnable: train p with the network (a one-element parameter) or keep it fixed (a buffer).
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True) -> None:
        super().__init__()
        value = torch.full((1,), float(p))
        if learnable:
            self.p = nn.Parameter(value)
        else:
            self.register_buffer("p", value)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, eps={self.eps}, learnable={isinstance(self.p, nn.Parameter)}"


class _AvgPool(nn.Module):
    """(N, C, H, W) -> (N, C) global average."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class _MaxPool(nn.Module):
    """(N, C, H, W) -> (N, C) global max."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1))


POOLS: dict[str, Callable[..., nn.Module]] = {"avg": _AvgPool, "max": _MaxPool, "gem": GeM}


def build_pool(name: str, **kwargs: float | bool) -> nn.Module:
    """A global pooling module mapping (N, C, H, W) to (N, C).

    Args:
        name: "avg", "max" or "gem".
        **kwargs: passed to the module (for "gem": `p`, `eps`, `learnable`).

    Returns:
        The pooling module.
    """
    if name not in POOLS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {sorted(POOLS)}")
    return POOLS[name](**kwargs)

"""Global pooling: GeM against average / max pooling and hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imagesearch.features.pooling import GeM, build_pool, gem


def _positive_map(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 + torch.rand(2, 3, 4, 4, generator=g, dtype=dtype)  # values in [0.5, 1.5)


def test_gem_p1_is_average_pooling() -> None:
    x = _positive_map()
    torch.testing.assert_close(gem(x, p=1.0), F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_gem_large_p_approaches_max() -> None:
    x = _positive_map(dtype=torch.float64)
    mx = x.amax(dim=(-2, -1))
    pooled = gem(x, p=200.0)
    # Power-mean bounds: max * (1/HW)^(1/p) <= GeM_p <= max, and 16^(-1/200) = 0.9862.
    assert torch.all(pooled <= mx + 1e-12)
    assert torch.all(pooled >= mx * 16 ** (-1 / 200) - 1e-12)
    # And GeM grows with p between the mean and the max.
    p1, p3, p10 = gem(x, 1.0), gem(x, 3.0), gem(x, 10.0)
    assert torch.all(p1 <= p3) and torch.all(p3 <= p10) and torch.all(p10 <= mx)


def test_gem_hand_value_and_clamp() -> None:
    x = torch.tensor([[[[1.0, 8.0]], [[0.0, -4.0]]]])  # (1, 2, 1, 2)
    out = gem(x, p=3.0, eps=1e-6)
    assert math.isclose(out[0, 0].item(), 256.5 ** (1 / 3), rel_tol=1e-6)  # ((1 + 512) / 2)^(1/3)
    assert math.isclose(out[0, 1].item(), 1e-6, rel_tol=1e-4)  # non-positive values clamp to eps


def test_gem_module_learnable_p_gets_gradient() -> None:
    pool = GeM(p=3.0)
    assert [n for n, _ in pool.named_parameters()] == ["p"]
    out = pool(_positive_map())
    assert out.shape == (2, 3)
    out.sum().backward()
    assert pool.p.grad is not None and torch.isfinite(pool.p.grad).all() and pool.p.grad.abs().item() > 0


def test_gem_module_fixed_p_is_a_buffer_and_round_trips() -> None:
    pool = GeM(p=4.0, learnable=False)
    assert list(pool.parameters()) == []
    other = GeM(p=1.0, learnable=False)
    other.load_state_dict(pool.state_dict())
    x = _positive_map(1)
    torch.testing.assert_close(other(x), gem(x, p=4.0))


@pytest.mark.parametrize(
    ("name", "reference"), [("avg", lambda x: x.mean(dim=(2, 3))), ("max", lambda x: x.amax(dim=(2, 3)))]
)
def test_build_pool(name: str, reference) -> None:
    x = _positive_map(2)
    torch.testing.assert_close(build_pool(name)(x), reference(x))


def test_build_pool_gem_kwargs_and_unknown_name() -> None:
    pool = build_pool("gem", p=2.0, learnable=False)
    x = _positive_map(3)
    torch.testing.assert_close(pool(x), x.pow(2).mean(dim=(2, 3)).sqrt())
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        build_pool("sum")

import math

import pytest
import torch

from facescale.config import MarginConfig
from facescale.errors import ConfigError
from facescale.heads.margins import MARGINS, CombinedMargin, build_margin


def naive_target(c: float, m1: float, m2: float, m3: float) -> float:
    """The documented function, one scalar at a time: arc while m1*theta+m2 <= pi, then the line."""
    theta = math.acos(c)
    if m1 * theta + m2 <= math.pi:
        return math.cos(m1 * theta + m2) - m3
    c_star = math.cos((math.pi - m2) / m1)
    return c - c_star - 1.0 - m3


def naive_logits(cosine: torch.Tensor, labels: torch.Tensor, s, m1, m2, m3) -> torch.Tensor:
    out = cosine.clone() * s
    for i, y in enumerate(labels.tolist()):
        if y >= 0:
            out[i, y] = s * naive_target(float(cosine[i, y]), m1, m2, m3)
    return out


def naive_target_derivative(c: float, m1: float, m2: float) -> float:
    """d/dc of the target function (before s and m3), by hand."""
    theta = math.acos(c)
    if m1 * theta + m2 <= math.pi:
        return m1 * math.sin(m1 * theta + m2) / math.sin(theta)
    return 1.0


CASES = {
    "arcface": (1.0, 0.5, 0.0),
    "cosface": (1.0, 0.0, 0.4),
    "combined": (1.0, 0.3, 0.2),
    "sphere_like": (1.35, 0.0, 0.0),
    "all_three": (1.1, 0.4, 0.15),
}


def _inputs(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    cosine = torch.rand(6, 5, generator=gen, dtype=dtype) * 1.9 - 0.95
    cosine[0, 2] = -0.99  # theta + 0.5 > pi: the extension
    cosine[1, 0] = -0.9
    cosine[2, 4] = 0.97
    labels = torch.tensor([2, 0, 4, -1, 1, 3])
    return cosine, labels


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_matches_naive_formula(name, dtype):
    m1, m2, m3 = CASES[name]
    cosine, labels = _inputs(dtype)
    margin = CombinedMargin(s=64.0, m1=m1, m2=m2, m3=m3)
    expected = naive_logits(cosine.double(), labels, 64.0, m1, m2, m3)
    tol = 1e-10 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(margin(cosine, labels).double(), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", list(CASES))
def test_exact_gradient_matches_hand_derivative(name):
    m1, m2, m3 = CASES[name]
    cosine, labels = _inputs()
    cosine.requires_grad_()
    upstream = torch.randn(cosine.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (CombinedMargin(s=64.0, m1=m1, m2=m2, m3=m3)(cosine, labels) * upstream).sum().backward()
    expected = upstream * 64.0
    for i, y in enumerate(labels.tolist()):
        if y >= 0:
            expected[i, y] *= naive_target_derivative(float(cosine.detach()[i, y]), m1, m2)
    torch.testing.assert_close(cosine.grad, expected, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_float64(name):
    m1, m2, m3 = CASES[name]
    cosine, labels = _inputs()
    margin = CombinedMargin(s=3.0, m1=m1, m2=m2, m3=m3)
    assert torch.autograd.gradcheck(lambda c: margin(c, labels), (cosine.requires_grad_(),))


def test_extension_is_continuous_and_monotone_past_pi():
    margin = CombinedMargin(s=1.0, m1=1.0, m2=0.5, m3=0.0)
    threshold = math.cos(math.pi - 0.5)
    c = torch.tensor([threshold - 1e-9, threshold, threshold + 1e-9], dtype=torch.float64)
    values = margin.target_logit(c)
    assert abs(float(values[0]) + 1.0) < 1e-8 and abs(float(values[2]) + 1.0) < 1e-8
    grid = torch.linspace(-0.999, 0.999, 2001, dtype=torch.float64)
    assert bool((margin.target_logit(grid).diff() > 0).all())
    assert bool((margin.target_logit(grid) <= grid + 1e-12).all())  # a margin never helps the target


def test_arcface_torch_gradient_skips_the_angular_factor():
    cosine, labels = _inputs()
    exact_in = cosine.clone().requires_grad_()
    approx_in = cosine.clone().requires_grad_()
    exact = CombinedMargin(s=64.0, m2=0.5, exact_gradient=True)
    approx = CombinedMargin(s=64.0, m2=0.5, exact_gradient=False)
    torch.testing.assert_close(exact(exact_in, labels), approx(approx_in, labels))  # same forward
    approx(approx_in, labels).sum().backward()
    assert bool((approx_in.grad == 64.0).all())  # as if the target logit were s * cos(theta)
    exact(exact_in, labels).sum().backward()
    assert not torch.allclose(exact_in.grad, approx_in.grad)


def test_rows_without_target_are_scaled_cosines():
    cosine, _ = _inputs()
    labels = torch.full((6,), -1)
    torch.testing.assert_close(CombinedMargin(s=64.0)(cosine, labels), cosine * 64.0)


@pytest.mark.parametrize("name", MARGINS.names())
def test_every_registered_margin_builds_from_the_default_config(name):
    margin = build_margin(MarginConfig(name=name))
    cosine, labels = _inputs()
    out = margin(cosine, labels)
    assert out.shape == cosine.shape and torch.isfinite(out).all()


def test_config_names_pick_the_standard_margins():
    assert build_margin(MarginConfig(name="arcface", s=32.0)) == CombinedMargin(32.0, 1.0, 0.5, 0.0)
    assert build_margin(MarginConfig(name="cosface")) == CombinedMargin(64.0, 1.0, 0.0, 0.4)
    cfg = MarginConfig(name="combined", m1=1.0, m2=0.3, m3=0.2, exact_gradient=False)
    assert build_margin(cfg) == CombinedMargin(64.0, 1.0, 0.3, 0.2, exact_gradient=False)


def test_bad_margins_are_config_errors():
    with pytest.raises(ConfigError, match="unknown margin 'arcfce'; did you mean arcface"):
        build_margin(MarginConfig(name="arcfce"))
    with pytest.raises(ConfigError, match="m2 must be in"):
        CombinedMargin(m2=4.0)

"""DARTS' architecture gradients against exact autograd (double backward) on a small model."""

from __future__ import annotations

import pytest
import torch

from naslab.strategies.darts_architect import (
    finite_difference_hvp,
    first_order_alpha_gradients,
    second_order_alpha_gradients,
)


def small_problem(seed: int = 0):
    """A mixed-op-like model: y = sum_k softmax(alpha)_k * tanh(x W_k), two data sets (float64:
    the comparison with exact derivatives is then limited by the finite difference alone)."""
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(3, 4, 5, generator=g, dtype=torch.float64).requires_grad_(True)]
    alphas = [(0.1 * torch.randn(3, generator=g, dtype=torch.float64)).requires_grad_(True)]
    xt, yt = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 5, generator=g, dtype=torch.float64)
    xv, yv = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 5, generator=g, dtype=torch.float64)

    def loss(w, a, x, y):
        mix = torch.softmax(a, 0)
        out = sum(mix[k] * torch.tanh(x @ w[k]) for k in range(3))
        return ((out - y) ** 2).mean()

    return (
        weights,
        alphas,
        (lambda: loss(weights[0], alphas[0], xt, yt)),
        (lambda: loss(weights[0], alphas[0], xv, yv)),
        loss,
        (xt, yt, xv, yv),
    )


def test_finite_difference_hvp_matches_double_backward() -> None:
    weights, alphas, train, _, _, _ = small_problem()
    vector = [torch.randn_like(weights[0])]
    (grad_w,) = torch.autograd.grad(train(), weights, create_graph=True)
    (exact,) = torch.autograd.grad((grad_w * vector[0]).sum(), alphas)
    before = weights[0].detach().clone()
    (approx,) = finite_difference_hvp(weights, alphas, train, vector)
    assert torch.equal(weights[0].detach(), before)  # weights restored exactly
    assert torch.allclose(approx, exact, rtol=1e-4, atol=1e-7), (approx, exact)


def test_second_order_gradient_matches_the_exact_unrolled_gradient() -> None:
    weights, alphas, train, valid, loss, (xt, yt, xv, yv) = small_problem(1)
    xi = 0.05
    (grad_w,) = torch.autograd.grad(loss(weights[0], alphas[0], xt, yt), weights, create_graph=True)
    unrolled = weights[0] - xi * grad_w  # d/dalpha flows through the virtual step
    (exact,) = torch.autograd.grad(loss(unrolled, alphas[0], xv, yv), alphas)
    before = weights[0].detach().clone()
    (approx,) = second_order_alpha_gradients(weights, alphas, train, valid, xi)
    assert torch.equal(weights[0].detach(), before)
    assert torch.allclose(approx, exact, rtol=1e-4, atol=1e-8), (approx, exact)
    (first,) = first_order_alpha_gradients(alphas, valid)
    assert not torch.allclose(first, exact, rtol=1e-3)  # the unrolled term matters here


def test_finite_difference_step_is_r_over_the_vector_norm(monkeypatch) -> None:
    """DARTS' eps = 0.01 / ||v||: the weights move by +eps v, then -2 eps v (and are restored)."""
    import naslab.strategies.darts_architect as architect

    weights, alphas, train, _, _, _ = small_problem()
    vector = [3.0 * torch.ones_like(weights[0])]  # ||v|| = 3 * sqrt(60)
    scales: list[float] = []
    original = architect._axpy

    def spy(tensors, direction, scale):
        scales.append(scale)
        return original(tensors, direction, scale)

    monkeypatch.setattr(architect, "_axpy", spy)
    finite_difference_hvp(weights, alphas, train, vector, r=0.01)
    eps = 0.01 / (3.0 * 60**0.5)
    assert len(scales) == 2
    assert scales[0] == pytest.approx(eps, rel=1e-12) and scales[1] == pytest.approx(-2 * eps, rel=1e-12)


def test_clipped_second_order_step_follows_darts_recurrent_architect() -> None:
    """clip rescales grad_w L_train (the virtual step) and grad_w' L_val (the HVP's vector) to that norm."""
    weights, alphas, train, valid, loss, (xt, yt, xv, yv) = small_problem(2)
    xi = 0.5
    (loose,) = second_order_alpha_gradients(weights, alphas, train, valid, xi, clip=1e6)
    (plain,) = second_order_alpha_gradients(weights, alphas, train, valid, xi)
    assert torch.allclose(loose, plain, rtol=1e-10)  # a clip above both norms changes nothing
    clip = 0.05
    (grad_w,) = torch.autograd.grad(loss(weights[0], alphas[0], xt, yt), weights)
    assert grad_w.norm() > clip  # the clip is active on this problem
    stepped = (weights[0] - xi * grad_w * clip / grad_w.norm()).detach().requires_grad_(True)
    direct, valid_w = torch.autograd.grad(loss(stepped, alphas[0], xv, yv), [alphas[0], stepped])
    vector = [valid_w * min(1.0, clip / float(valid_w.norm()))]
    (hvp,) = finite_difference_hvp(weights, alphas, train, vector)
    (clipped,) = second_order_alpha_gradients(weights, alphas, train, valid, xi, clip=clip)
    assert torch.allclose(clipped, direct - xi * hvp, rtol=1e-6, atol=1e-10)
    assert not torch.allclose(clipped, plain, rtol=1e-3)

"""DARTS' architecture gradients against exact autograd (double backward) on a small model.

The references differentiate through the virtual step w'(alpha) with autograd (create_graph), so
they share nothing with the finite-difference formula under test ("DARTS: Differentiable
Architecture Search", Liu, Simonyan, Yang, arXiv:1806.09055, Eqns. 6-8; quark0/darts
cnn/architect.py and rnn/architect.py for the authors' virtual steps).
"""

from __future__ import annotations

import pytest
import torch

from naslab.strategies.darts.architect import (
    clip_coefficient,
    finite_difference_hvp,
    first_order_alpha_gradients,
    second_order_alpha_gradients,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    # its own generator: drawn from the global one, the vector (and so the error) depended on the tests before
    vector = [torch.randn(weights[0].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)]
    (grad_w,) = torch.autograd.grad(train(), weights, create_graph=True)
    (exact,) = torch.autograd.grad((grad_w * vector[0]).sum(), alphas)
    before = weights[0].detach().clone()
    (approx,) = finite_difference_hvp(weights, alphas, train, vector)
    assert torch.equal(weights[0].detach(), before)  # weights restored exactly
    # A central difference with DARTS' epsilon = 0.01 / ||v|| errs by O(epsilon^2): at most 9e-5 of the largest
    # entry over 200 random vectors of this problem, so 1e-3 of it is a bound no wrong factor or sign passes.
    assert torch.allclose(approx, exact, rtol=0, atol=1e-3 * float(exact.abs().max())), (approx, exact)


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
    import naslab.strategies.darts.architect as architect

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


def unrolled_reference(loss, w, a, data, xi, clip=None, weight_decay=0.0, momentum_term=None):
    """grad_alpha L_val(w'(alpha), alpha) by autograd through the authors' virtual step.

    w'(alpha) = w - xi * (c * g(w, alpha) + weight_decay * w + momentum_term), g = grad_w L_train,
    with c = min(1, clip / (||g|| + 1e-6)) a constant (quark0/darts rnn/architect.py takes it from
    `.data`). The vector grad_w' L_val is clipped as rnn/architect.py clips it before its Hessian-vector
    product; that vector is then pulled back through dw'/dalpha by a double backward.
    """
    xt, yt, xv, yv = data
    w0 = w.detach().clone().requires_grad_(True)
    a = a.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(w0, a, xt, yt), [w0], create_graph=True)
    c = 1.0 if clip is None else min(1.0, clip / (float(g.detach().norm()) + 1e-6))
    step = c * g + weight_decay * w0.detach()
    if momentum_term is not None:
        step = step + momentum_term
    unrolled = w0.detach() - xi * step  # depends on alpha through g only
    leaf = unrolled.detach().requires_grad_(True)
    direct, vector = torch.autograd.grad(loss(leaf, a, xv, yv), [a, leaf])
    if clip is not None:
        vector = vector * min(1.0, clip / (float(vector.norm()) + 1e-6))
    (implicit,) = torch.autograd.grad(unrolled, [a], grad_outputs=vector)
    return direct + implicit, c


def test_clipped_second_order_step_carries_the_clip_factor() -> None:
    """rnn/architect.py: w' = w - eta * clip_coef * g, and the implicit term is scaled by eta * clip_coef.

    Against autograd through the clipped virtual step; on PTB (lr 20, clip 0.25) the clip is active,
    and an implicit term without the clip factor is 1 / clip_coef too large.
    """
    weights, alphas, train, valid, loss, data = small_problem(3)
    xi, clip = 20.0, 0.05  # PTB's lr 20, a clip this problem's gradient exceeds ~3x
    expected, coef = unrolled_reference(loss, weights[0], alphas[0], data, xi, clip=clip)
    assert coef < 0.5  # the clip is active
    before = weights[0].detach().clone()
    (got,) = second_order_alpha_gradients(weights, alphas, train, valid, xi, clip=clip)
    assert torch.equal(weights[0].detach(), before)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-9), (got, expected)
    (first,) = first_order_alpha_gradients(alphas, valid)
    assert not torch.allclose(got, first, rtol=1e-2)  # the implicit term is not negligible here


def test_recurrent_virtual_step_adds_weight_decay_and_a_loose_clip_changes_nothing() -> None:
    """rnn/architect.py: dtheta = clipped g + wdecay * theta; a clip above both norms is no clip."""
    weights, alphas, train, valid, loss, data = small_problem(2)
    xi, clip, wd = 5.0, 0.05, 0.02
    expected, _ = unrolled_reference(loss, weights[0], alphas[0], data, xi, clip=clip, weight_decay=wd)
    (got,) = second_order_alpha_gradients(weights, alphas, train, valid, xi, clip=clip, weight_decay=wd)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-9), (got, expected)
    (without_decay,) = second_order_alpha_gradients(weights, alphas, train, valid, xi, clip=clip)
    assert not torch.allclose(got, without_decay, rtol=1e-4)
    (loose,) = second_order_alpha_gradients(weights, alphas, train, valid, xi, clip=1e6)
    (plain,) = second_order_alpha_gradients(weights, alphas, train, valid, xi)
    assert torch.allclose(loose, plain, rtol=1e-10)


def test_convolutional_virtual_step_folds_in_momentum_and_weight_decay() -> None:
    """cnn/architect.py: w' = w - eta * (momentum * buf + g + weight_decay * w), no clipping."""
    weights, alphas, train, valid, loss, data = small_problem(4)
    xi, wd = 0.3, 0.1
    buffer = 0.9 * torch.randn(weights[0].shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected, _ = unrolled_reference(loss, weights[0], alphas[0], data, xi, weight_decay=wd, momentum_term=buffer)
    (got,) = second_order_alpha_gradients(weights, alphas, train, valid, xi, weight_decay=wd, momentum_term=[buffer])
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-9), (got, expected)
    (paper,) = second_order_alpha_gradients(weights, alphas, train, valid, xi)
    assert not torch.allclose(got, paper, rtol=1e-3)  # the paper's w - xi * g is another point
    (none_term,) = second_order_alpha_gradients(
        weights, alphas, train, valid, xi, weight_decay=wd, momentum_term=[None]
    )
    expected_no_buffer, _ = unrolled_reference(loss, weights[0], alphas[0], data, xi, weight_decay=wd)
    assert torch.allclose(none_term, expected_no_buffer, rtol=1e-5, atol=1e-9)  # no buffer yet: zero


def test_clip_coefficient_is_the_factor_actually_applied() -> None:
    """rnn/architect.py `_clip` returns max_norm / (norm + 1e-6) even above 1; the factor applied is min(1, .)."""
    grads = [torch.tensor([3.0, 4.0])]  # norm 5
    assert clip_coefficient(grads, 0.25) == pytest.approx(0.25 / (5 + 1e-6), rel=1e-12)
    assert clip_coefficient(grads, 10.0) == 1.0
    assert clip_coefficient(grads, None) == 1.0

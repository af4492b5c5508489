"""DARTS' architecture gradient, generic over models.

DARTS: "DARTS: Differentiable Architecture Search", Hanxiao Liu, Karen Simonyan, Yiming Yang,
arXiv:1806.09055. Bilevel problem: min_alpha L_val(w*(alpha), alpha) with
w*(alpha) = argmin_w L_train(w, alpha). First order treats w as fixed: grad_alpha L_val(w, alpha).
Second order unrolls one virtual step and differentiates through it.

The paper's virtual step (Eqns. 6-7) is w' = w - xi * grad_w L_train(w, alpha), which gives

    grad_alpha L_val(w', alpha) - xi * grad^2_{alpha,w} L_train(w, alpha) . grad_w' L_val(w', alpha)

The authors' code takes a fuller step; `second_order_alpha_gradients` covers both through its
arguments. With g = grad_w L_train(w, alpha), c = min(1, clip / ||g||) (1 without `clip`), m a
momentum term and wd a weight decay:

    w' = w - xi * (c * g + wd * w + m)

quark0/darts cnn/architect.py `_compute_unrolled_model`: m = momentum * SGD momentum buffer, wd =
the SGD weight decay, no clip. quark0/darts rnn/architect.py: the clipped gradient (c < 1 on PTB)
plus wd, no momentum. Only c * g depends on alpha (c is a constant there, as in the authors' code),
so the implicit term is xi * c * grad^2_{alpha,w} L_train . v, with v = grad_w' L_val(w', alpha),
itself clipped to norm `clip` when `clip` is given (rnn/architect.py clips it too).

The Hessian-vector product is taken by central finite differences, as in the paper (Eqn. 8):
(grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps), w+- = w +- eps * v,
eps = 0.01 / ||v||. Nothing here knows about cells or tokens: the model is a list of weight
tensors, a list of architecture tensors and two loss closures, so CNN and RNN searches share it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

LossFn = Callable[[], torch.Tensor]


def _grads(loss: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients with zeros where a tensor does not influence the loss (e.g. an unused op)."""
    grads = torch.autograd.grad(loss, list(tensors), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


@torch.no_grad()
def _axpy(tensors: Sequence[torch.Tensor], direction: Sequence[torch.Tensor], scale: float) -> None:
    for t, d in zip(tensors, direction):
        t.add_(d, alpha=scale)


def finite_difference_hvp(
    weights: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    train_loss: LossFn,
    vector: Sequence[torch.Tensor],
    r: float = 0.01,
) -> list[torch.Tensor]:
    """grad^2_{alpha,w} L_train . vector, by central differences in w (DARTS Eqn. 8).

    The weights are moved in place and restored exactly to their values on return.
    """
    norm = torch.sqrt(sum((v.double() ** 2).sum() for v in vector))
    if not torch.isfinite(norm) or norm == 0:
        return [torch.zeros_like(a) for a in alphas]
    eps = float(r / norm)
    backup = [w.detach().clone() for w in weights]
    try:
        _axpy(weights, vector, eps)
        plus = _grads(train_loss(), alphas)
        _axpy(weights, vector, -2 * eps)
        minus = _grads(train_loss(), alphas)
    finally:
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)
    return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]


def clip_coefficient(grads: Sequence[torch.Tensor], max_norm: float | None) -> float:
    """The factor that clipping `grads` to total norm `max_norm` applies: min(1, max_norm / (norm + 1e-6)).

    1 when `max_norm` is None. quark0/darts rnn/architect.py `_clip` returns max_norm / (norm + 1e-6)
    even when it does not clip (then > 1), and its implicit term is scaled by that raw value; naslab
    scales by the factor applied to the gradient, which is the same whenever the clip is active (on
    PTB nearly always; a deviation listed in docs/methods/darts.md).
    """
    if max_norm is None:
        return 1.0
    norm = torch.sqrt(sum((g.detach().double() ** 2).sum() for g in grads))
    return min(1.0, max_norm / (float(norm) + 1e-6))


def first_order_alpha_gradients(alphas: Sequence[torch.Tensor], valid_loss: LossFn) -> list[torch.Tensor]:
    """DARTS order 1: grad_alpha L_val(w, alpha) at the current weights."""
    return _grads(valid_loss(), alphas)


def second_order_alpha_gradients(
    weights: Sequence[torch.Tensor],
    alphas: Sequence[torch.Tensor],
    train_loss: LossFn,
    valid_loss: LossFn,
    xi: float,
    r: float = 0.01,
    clip: float | None = None,
    weight_decay: float = 0.0,
    momentum_term: Sequence[torch.Tensor | None] | None = None,
    hvp_train_loss: LossFn | None = None,
) -> list[torch.Tensor]:
    """DARTS order 2: the unrolled alpha gradient; the weights are left unchanged.

    Virtual step w' = w - xi * (c * grad_w L_train + weight_decay * w + momentum_term), with
    c = `clip_coefficient(grad_w L_train, clip)`; the implicit term is scaled by xi * c, and
    grad_w' L_val is clipped to `clip` before the Hessian-vector product. The defaults (no clip,
    no weight decay, no momentum) are the paper's Eqns. 6-8; `momentum_term` (momentum times the
    SGD buffer, None entries for zero) and `weight_decay` give quark0/darts cnn/architect.py,
    `clip` and `weight_decay` give rnn/architect.py. `hvp_train_loss` (default `train_loss`) is the
    train loss of the two finite-difference passes: under mixed precision, a float32 one, because the
    difference quotient of two nearly equal gradients would drown in bf16 rounding.
    """
    momentum_term = list(momentum_term) if momentum_term is not None else [None] * len(weights)
    backup = [w.detach().clone() for w in weights]
    try:
        train_w = _grads(train_loss(), weights)
        coef = clip_coefficient(train_w, clip)
        with torch.no_grad():
            for w, g, w0, m in zip(weights, train_w, backup, momentum_term):
                step = g * coef
                if weight_decay:
                    step = step + weight_decay * w0
                if m is not None:
                    step = step + m
                w.sub_(step, alpha=xi)  # the virtual step w'
        grads = _grads(valid_loss(), [*alphas, *weights])
    finally:
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)
    direct, valid_w = grads[: len(alphas)], grads[len(alphas) :]
    vector_coef = clip_coefficient(valid_w, clip)
    vector = [v * vector_coef for v in valid_w] if vector_coef < 1.0 else valid_w
    hvp = finite_difference_hvp(weights, alphas, hvp_train_loss or train_loss, vector, r)
    return [d - (xi * coef) * h for d, h in zip(direct, hvp)]

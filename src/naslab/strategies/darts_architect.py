"""DARTS' architecture gradient (Liu et al. 2019; the NAS overview, file 004), generic over models.

Bilevel problem: min_alpha L_val(w*(alpha), alpha) with w*(alpha) = argmin_w L_train(w, alpha).
First order treats w as fixed: grad_alpha L_val(w, alpha). Second order unrolls one virtual step
w' = w - xi * grad_w L_train(w, alpha) and differentiates through it:

    grad_alpha L_val(w', alpha) - xi * grad^2_{alpha,w} L_train(w, alpha) . grad_w' L_val(w', alpha)

with the Hessian-vector product taken by central finite differences, as in the paper:
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


def _clipped(grads: list[torch.Tensor], max_norm: float | None) -> list[torch.Tensor]:
    """The gradients scaled down to total norm `max_norm` (unchanged when None or already within it)."""
    if max_norm is None:
        return grads
    norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads] if scale < 1.0 else grads


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
) -> list[torch.Tensor]:
    """DARTS order 2 (Eqns. 6-8): the unrolled alpha gradient; the weights are left unchanged.

    `clip` rescales grad_w L_train (the virtual step) and grad_w' L_val (the Hessian-vector product's
    vector) to at most that norm, as DARTS' recurrent architect does: with its lr 20 an unclipped
    virtual step lands far from w.
    """
    backup = [w.detach().clone() for w in weights]
    try:
        step = _clipped(_grads(train_loss(), weights), clip)
        _axpy(weights, step, -xi)  # the virtual step w' = w - xi * grad_w L_train
        grads = _grads(valid_loss(), [*alphas, *weights])
    finally:
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)
    direct, valid_w = grads[: len(alphas)], _clipped(grads[len(alphas) :], clip)
    hvp = finite_difference_hvp(weights, alphas, train_loss, valid_w, r)
    return [d - xi * h for d, h in zip(direct, hvp)]

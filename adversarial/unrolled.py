r"""Unrolled discriminator steps (Metz et al. 2017, "Unrolled generative adversarial networks").

The generator's loss is taken against the discriminator *K optimiser steps ahead*:

.. math::
    θ_D^0 = θ_D,\qquad θ_D^{k+1} = θ_D^k + \mathrm{step}\big(∇_{θ_D} L_D(θ_D^k, θ_G)\big),\qquad
    L_G^{(K)}(θ_G) = L_G(θ_G, θ_D^K(θ_G)),

and :math:`∇_{θ_G} L_G^{(K)}` is taken *through* the K steps (``create_graph=True``): the generator
sees how the discriminator would react to it, which is what discourages it from hopping between
modes. The look-ahead reproduces the discriminator's real optimiser, Adam, functionally (from the
optimiser's current moments and step count), as the paper does; plain SGD look-ahead steps, which do
not match the real update, unroll into a different game and help much less. The real discriminator
parameters are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deepprob.errors import InputError
from deepprob.optim import adam_arithmetic


def adam_lookahead(
    module: nn.Module,
    optimizer: torch.optim.Adam,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    steps: int,
) -> dict[str, torch.Tensor]:
    r"""The parameters of ``module`` after ``steps`` differentiable Adam steps on ``loss_fn``.

    Each step is Adam's update, from the moments :math:`m, v` and step count :math:`t` that
    ``optimizer`` holds for each parameter:

    .. math::
        m ← β_1 m + (1 - β_1) g,\quad v ← β_2 v + (1 - β_2) g^2,\quad
        θ ← θ - η\,\frac{m / (1 - β_1^{t})}{\sqrt{v / (1 - β_2^{t})} + ε},

    with :math:`g = ∇_θ` ``loss_fn(θ)`` computed with ``create_graph=True``, so that the returned
    parameters are differentiable functions of whatever ``loss_fn`` depends on (the generator).

    Args:
        module: the discriminator (its buffers are used as they are).
        optimizer: its Adam optimiser (one parameter group, no weight decay, no amsgrad).
        loss_fn: maps a ``{name: tensor}`` parameter dict to the scalar discriminator loss, e.g. with
            :func:`torch.func.functional_call`.
        steps: K >= 1.

    Returns:
        ``{name: θ^K}`` for every parameter of ``module``: use it with ``functional_call``.
    """
    if steps < 1:
        raise InputError(f"--unrolled {steps}: expected at least 1 look-ahead step")
    if not isinstance(optimizer, torch.optim.Adam) or len(optimizer.param_groups) != 1:
        raise TypeError("adam_lookahead needs the discriminator's torch.optim.Adam with one parameter group")
    group = optimizer.param_groups[0]
    if group.get("weight_decay", 0) or group.get("amsgrad", False):
        raise TypeError("adam_lookahead reproduces plain Adam: no weight decay, no amsgrad")
    lr, (beta1, beta2), eps = float(group["lr"]), group["betas"], group["eps"]

    names, params, moments = [], [], []
    for name, p in module.named_parameters():
        state = optimizer.state.get(p, {})
        if "exp_avg" in state:
            m, v, t = state["exp_avg"].detach(), state["exp_avg_sq"].detach(), float(state["step"])
        else:  # before Adam's first step: zero moments, step 0
            m, v, t = torch.zeros_like(p), torch.zeros_like(p), 0.0
        names.append(name)
        params.append(p)
        moments.append((m, v, t))

    theta = params
    for _ in range(steps):
        loss = loss_fn(dict(zip(names, theta)))
        grads = torch.autograd.grad(loss, theta, create_graph=True)
        new_theta, new_moments = [], []
        for p, g, (m, v, t) in zip(theta, grads, moments):
            # differentiated through: the square root's argument kept off zero (a dead ReLU's zero
            # gradient would otherwise give 0 * inf = NaN in the backward pass)
            p, m, v = adam_arithmetic(p, g, m, v, t + 1, lr, (beta1, beta2), eps, sqrt_floor=1e-30)
            new_theta.append(p)
            new_moments.append((m, v, t + 1))
        theta, moments = new_theta, new_moments
    return dict(zip(names, theta))

r"""A check of a model against draws of its posterior made elsewhere, without the program that made them.

Under the posterior the score has mean zero: for a density p(u | y) on the whole of R^D that vanishes at
infinity, :math:`E_p[\nabla_u \log p(u, y)] = \int \nabla_u p(u | y)\,du = 0`. So at reference draws
u_1..u_n (in the model's unconstrained coordinates, where the log joint carries the Jacobian of each
site's map, :meth:`~deepprob.logdensity.ModelStructure.log_joint_unconstrained`), the mean gradient
divided by its standard error is about N(0, 1) in every coordinate when the model is the one that made
the draws, and grows like sqrt(n) times the bias when it is not (a prior, a likelihood, a transformed
datum written wrong). Unconstrained coordinates, not the draws' own: a density on (0, inf) need not
vanish at 0 (eight schools' tau), and there the identity would not hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from deepprob.inference.evaluation.references import given_draws
from deepprob.logdensity import ModelStructure


def score_z(model: Callable, *args, draws: dict, reference_latents: Callable[[dict], dict] | None = None,
            num_draws: int = 400, seed: int = 0, **kwargs) -> tuple[torch.Tensor, list[str]]:
    """z = mean / standard error of the score at ``num_draws`` of the reference ``draws``, per coordinate.

    Args:
        draws: the reference draws ({site or ``name[i]``: (chains, draws) ...}, as ``compare`` takes them).
        reference_latents: params -> the model's latent sites, where the draws name other parameters
            (a transformed parameter instead of the one it is made from).

    Returns:
        z (D,) and the label of each unconstrained coordinate.
    """
    structure = ModelStructure.of(model, *args, **kwargs)
    params, _ = given_draws(draws, structure)
    generator = torch.Generator().manual_seed(seed)
    total = len(next(iter(params.values())))
    pick = torch.randperm(total, generator=generator)[:num_draws]
    params = {k: v[pick].to(torch.get_default_dtype()) for k, v in params.items()}
    latents = reference_latents(params) if reference_latents is not None else params
    u = structure.pack_draws({name: latents[name] for name in structure.latent}).detach().requires_grad_()
    log_joint = structure.log_joint_unconstrained(model, *args, **kwargs)(u)
    (score,) = torch.autograd.grad(log_joint.sum(), u)  # row s depends on u_s alone
    n = score.shape[0]
    z = score.mean(0) / (score.std(0) / math.sqrt(n)).clamp_min(torch.finfo(score.dtype).tiny)
    return z.detach(), structure.unconstrained_labels()

r"""Walking a generator's latent space: fixed noise from a seed, interpolation, vector arithmetic.

Interpolation is spherical (slerp): for z ~ N(0, I) in many dimensions, almost all the mass lies near
the sphere of radius √d, and the straight line between two samples cuts through the low-norm interior,
which the generator never saw in training; slerp stays near the sphere.

Latent arithmetic (Radford et al. 2016): average the latent vectors of a few chosen samples per group
(single samples are noisy) and decode :math:`\bar z_A - \bar z_B + \bar z_C`.
"""

from __future__ import annotations

import torch

from deepprob.errors import InputError


def fixed_noise(n: int, latent_dim: int, seed: int, device="cpu") -> torch.Tensor:
    """(n, latent_dim) N(0, I) draws that depend on ``seed`` only (drawn on the CPU, then moved), so the
    same seed gives the same latent points on any device, in training and in ``gan sample``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim, generator=g).to(device)


def slerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    r"""``steps`` points from z0 to z1 (D,) along the great circle, scaled linearly in norm:
    :math:`\frac{\sin((1-t)Ω)}{\sin Ω} z_0 + \frac{\sin(tΩ)}{\sin Ω} z_1`, cos Ω = ⟨ẑ_0, ẑ_1⟩. Shape (steps, D)."""
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype)[:, None]
    u0, u1 = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.arccos((u0 * u1).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    if float(omega) < 1e-4:  # (nearly) parallel: the straight line is the arc
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def parse_groups(text: str, n: int) -> list[list[int]]:
    """'1,2,3;4,5,6;7,8,9' -> three lists of sample indices, each in [0, n)."""
    groups = []
    for part in text.split(";"):
        try:
            groups.append([int(t) for t in part.split(",") if t.strip()])
        except ValueError:
            groups = []
            break
    if len(groups) != 3 or any(not g for g in groups):
        raise InputError(
            f"--arithmetic {text!r}: expected three ';'-separated groups of sample indices, e.g. 0,1,2;3,4;5"
        )
    bad = [i for g in groups for i in g if not 0 <= i < n]
    if bad:
        raise InputError(f"--arithmetic {text!r}: index {bad[0]} is outside the sample grid (0..{n - 1})")
    return groups


def pick_by_attribute(
    labels: torch.Tensor,
    ink: torch.Tensor,
    confidence: torch.Tensor | None = None,
    per_group: int = 3,
    min_confidence: float = 0.9,
) -> tuple[list[list[int]], dict] | None:
    """Automatic groups for "thick x − thin x + thin y = thick y" on generated digits.

    ``labels`` (N,) are the classes a classifier gives the samples, ``confidence`` (N,) its probability
    for them and ``ink`` (N,) their mean pixel value (stroke thickness). Samples classified with at
    least ``min_confidence`` are preferred, so that the groups hold clear digits. Class x is the most
    frequent class, y the next one with enough samples; A = the ``per_group`` inkiest samples of x,
    B = the faintest of x, C = the faintest of y.

    Returns:
        ([A, B, C] index lists, {"x": class x, "y": class y}), or None when fewer than two classes have
        enough samples (a generator early in training).
    """
    candidates = [labels]
    if confidence is not None:
        candidates.insert(0, torch.where(confidence >= min_confidence, labels, torch.full_like(labels, -1)))
    for labelled in candidates:
        counts = torch.bincount(labelled[labelled >= 0], minlength=int(labels.max()) + 1)
        order = torch.argsort(counts, descending=True).tolist()
        x = next((c for c in order if counts[c] >= 2 * per_group), None)
        y = next((c for c in order if c != x and counts[c] >= per_group), None)
        if x is not None and y is not None:
            break
    else:
        return None

    def ranked(c: int, descending: bool) -> list[int]:
        members = (labelled == c).nonzero().squeeze(1)
        return members[torch.argsort(ink[members], descending=descending)].tolist()

    return [ranked(x, True)[:per_group], ranked(x, False)[:per_group], ranked(y, False)[:per_group]], {"x": x, "y": y}


def arithmetic(z: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    r""":math:`\bar z_A - \bar z_B + \bar z_C` for three index groups into ``z`` (N, D); shape (D,)."""
    a, b, c = (z[g].mean(0) for g in groups)
    return a - b + c

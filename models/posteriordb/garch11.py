"""posteriordb ``garch11`` (garch): a GARCH(1,1) volatility model, flat priors on the declared supports.

    mu flat,  alpha0 flat > 0,  alpha1 flat in (0, 1),  beta1 flat in (0, 1 - alpha1)
    sigma[1] = sigma1;  sigma[t] = sqrt(alpha0 + alpha1 (y[t-1] - mu)^2 + beta1 sigma[t-1]^2)
    y ~ normal(mu, sigma)

Two rewritings, exact: beta1's support depends on alpha1, which a guide's fixed map to the unconstrained
space cannot follow, so the model samples beta1_raw flat in (0, 1) and records beta1 = (1 - alpha1)
beta1_raw, with the log-Jacobian log(1 - alpha1) that keeps beta1's prior flat; and the recursion is
solved in closed form, sigma[t]^2 = beta1^(t-1) sigma1^2 + sum_{j<t} beta1^(t-1-j) (alpha0 + alpha1
(y[j] - mu)^2), one matrix product instead of T dependent steps.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from deepprob.models.posteriordb.stan import flat


def model(data):
    y, T = data["y"], data["T"]
    mu = flat("mu")
    alpha0 = flat("alpha0", constraints.positive)
    alpha1 = flat("alpha1", constraints.unit_interval)
    beta1_raw = flat("beta1_raw", constraints.unit_interval)
    beta1 = pyro.deterministic("beta1", (1 - alpha1) * beta1_raw)
    pyro.factor("beta1_jacobian", torch.log1p(-alpha1))
    with pyro.plate("time", T):
        pyro.sample("y", dist.Normal(mu, garch_sigma(y, mu, alpha0, alpha1, beta1, float(data["sigma1"]))), obs=y)


def garch_sigma(y, mu, alpha0, alpha1, beta1, sigma1: float):
    """sigma[t] for every t (T,), or (..., T) for parameters of batch shape (..., 1)."""
    T = y.shape[-1]
    t = torch.arange(T, dtype=y.dtype, device=y.device)
    lag = t[:, None] - 1 - t[None, :]  # t - 1 - j, the power of beta1 of the term j < t
    below = lag >= 0
    log_beta1 = torch.log(beta1).unsqueeze(-1)
    powers = torch.exp(log_beta1 * lag.clamp_min(0)) * below  # exponent kept >= 0 where masked: no inf * 0
    innovations = alpha0 + alpha1 * (y - mu) ** 2
    variance = torch.exp(log_beta1.squeeze(-1) * t) * sigma1**2 + (powers @ innovations.unsqueeze(-1)).squeeze(-1)
    return variance.sqrt()


def reference_latents(params, data):
    """The draws name beta1: beta1_raw = beta1 / (1 - alpha1)."""
    return {"mu": params["mu"], "alpha0": params["alpha0"], "alpha1": params["alpha1"],
            "beta1_raw": params["beta1"] / (1 - params["alpha1"])}

"""posteriordb ``gp_pois_regr``: a latent Gaussian process with Poisson counts, non-centred.

    rho ~ gamma(25, 4),   alpha ~ normal(0, 2), alpha > 0,   f_tilde ~ normal(0, 1) (N)
    f = cholesky(gp_exp_quad_cov(x, alpha, rho) + 1e-10 I) * f_tilde     (transformed parameter)
    k ~ poisson_log(f)
"""

import pyro
import pyro.distributions as dist
import torch


def model(data):
    x, k = data["x"], data["k"]
    rho = pyro.sample("rho", dist.Gamma(x.new_tensor(25.0), 4.0))
    alpha = pyro.sample("alpha", dist.HalfNormal(x.new_tensor(2.0)))
    L = cholesky_factor(x, alpha, rho)
    with pyro.plate("points", data["N"]):
        f_tilde = pyro.sample("f_tilde", dist.Normal(x.new_tensor(0.0), 1.0))
        f = pyro.deterministic("f", (L @ f_tilde.unsqueeze(-1)).squeeze(-1))
        pyro.sample("k", dist.Poisson(f.exp()), obs=k)


def cholesky_factor(x, alpha, rho):
    """The Cholesky factor of alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) + 1e-10 I: (N, N), or (..., N, N) for
    alpha and rho of batch shape (..., 1)."""
    sq = (x[:, None] - x[None, :]) ** 2
    a, r = alpha.unsqueeze(-1), rho.unsqueeze(-1)
    cov = a**2 * torch.exp(-sq / (2 * r**2)) + 1e-10 * torch.eye(len(x), dtype=x.dtype, device=x.device)
    return torch.linalg.cholesky(cov)


def reference_latents(params, data):
    """The draws name f: f_tilde = L^-1 f."""
    L = cholesky_factor(data["x"], params["alpha"][..., None], params["rho"][..., None])
    f_tilde = torch.linalg.solve_triangular(L, params["f"].unsqueeze(-1), upper=False).squeeze(-1)
    return {"rho": params["rho"], "alpha": params["alpha"], "f_tilde": f_tilde}

"""posteriordb ``eight_schools_noncentered``: the eight schools' effects, hierarchical, non-centred.

    theta_trans ~ normal(0, 1) (J),   mu ~ normal(0, 5),   tau ~ cauchy(0, 5), tau > 0
    theta = theta_trans * tau + mu                     (transformed parameter)
    y ~ normal(theta, sigma)
"""

import pyro
import pyro.distributions as dist


def model(data):
    y, sigma = data["y"], data["sigma"]
    mu = pyro.sample("mu", dist.Normal(y.new_tensor(0.0), 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(y.new_tensor(5.0)))
    with pyro.plate("schools", data["J"]):
        theta_trans = pyro.sample("theta_trans", dist.Normal(y.new_tensor(0.0), 1.0))
        theta = pyro.deterministic("theta", theta_trans * tau + mu)
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def reference_latents(params, data):
    """The draws name theta, mu and tau: theta_trans = (theta - mu) / tau."""
    mu, tau = params["mu"], params["tau"]
    return {"mu": mu, "tau": tau, "theta_trans": (params["theta"] - mu[..., None]) / tau[..., None]}

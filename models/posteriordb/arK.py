"""posteriordb ``arK``: an autoregressive model of order K.

    alpha ~ normal(0, 10),   beta ~ normal(0, 10) (K),   sigma ~ cauchy(0, 2.5), sigma > 0
    y[t] ~ normal(alpha + sum_k beta[k] * y[t - k], sigma),   t = K + 1, ..., T

The sum over lags is one matrix product with the (T - K, K) matrix of lagged values.
"""

import pyro
import pyro.distributions as dist
import torch

from deepprob.models.posteriordb.stan import regression


def model(data):
    y, K, T = data["y"], data["K"], data["T"]
    lags = torch.stack([y[K - k:T - k] for k in range(1, K + 1)], 1)  # row t - K - 1: y[t - 1], ..., y[t - K]
    alpha = pyro.sample("alpha", dist.Normal(y.new_tensor(0.0), 10.0))
    beta = pyro.sample("beta", dist.Normal(y.new_zeros(K), 10.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfCauchy(y.new_tensor(2.5)))
    regression("y", lags, beta, sigma, y[K:], offset=alpha)

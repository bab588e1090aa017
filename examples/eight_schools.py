"""Eight schools (Rubin 1981; Gelman et al., Bayesian Data Analysis, 5.5), as the README's shell example runs it:

    deepprob compare --model examples/eight_schools.py:model --data examples/eight_schools.json

The data file holds ``y`` (each school's estimated effect) and ``sigma`` (its standard error); the model is
the non-centred form, the one Stan's and Pyro's examples use for it.
"""

import pyro
import pyro.distributions as dist


def model(data):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(data["y"])):
        theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * theta_trans)
        pyro.sample("y", dist.Normal(theta, data["sigma"]), obs=data["y"])

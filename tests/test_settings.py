"""One settings object for a fit (deepprob.inference.fitting.settings): checked once where it is made, every default and
its rule in one place, the same fit whether the settings come as an object or as keywords."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import deepprob
from deepprob.errors import InputError
from deepprob.examples.commands import parse
from deepprob.inference.fitting.settings import (
    COMPARE,
    EXAMPLES,
    MAP,
    FitSettings,
    compare_lr,
    compare_settings,
)


@pytest.mark.parametrize("changes, named", [
    ({"steps": 0}, "--steps 0"), ({"lr": -0.1}, "--lr -0.1"), ({"lr": math.nan}, "--lr nan"),
    ({"num_particles": 0}, "--num-particles 0"), ({"engine": "jax"}, "--engine 'jax'"),
    ({"objective": "kl"}, "--objective 'kl'"), ({"final_lr_fraction": 0.0}, "final_lr_fraction 0.0"),
    ({"average_fraction": 1.0}, "average_fraction 1.0"),
])
def test_a_bad_setting_is_refused_where_it_is_made(changes, named):
    with pytest.raises(InputError, match=named):
        FitSettings(**changes)
    with pytest.raises(InputError, match=named):  # and by every function that takes settings as keywords
        deepprob.fit(lambda: None, **changes)


def test_a_keyword_that_is_no_setting_says_which_are():
    with pytest.raises(TypeError, match="lr_decay.*the fit's settings are steps, lr"):
        FitSettings.of(lr_decay=0.5)
    assert FitSettings.of(None) == FitSettings() and FitSettings.of(MAP, steps=10) == MAP.replace(steps=10)


def test_the_objective_is_kept_in_its_canonical_form():
    assert FitSettings(objective=" iwae:5 ").objective == "iwae:5"
    assert FitSettings(objective="renyi:0.5").parsed_objective.alpha == 0.5


def test_compare_takes_its_learning_rate_from_the_start_and_the_steps():
    assert compare_lr("laplace", 10000) == 0.005 and compare_lr("laplace", 100) == 0.02
    assert compare_lr("laplace", 5000) == pytest.approx(0.01) and compare_lr("prior", 10000) == 0.02
    made = compare_settings("laplace")
    assert (made.steps, made.num_particles, made.lr) == (COMPARE["steps"], COMPARE["num_particles"], 0.005)
    assert compare_settings("laplace", steps=2500).lr == pytest.approx(0.02)  # the rule follows the steps given
    assert compare_settings("laplace", lr=0.03, steps=2500).lr == 0.03  # a learning rate given is kept
    assert compare_settings("laplace", lr=None).lr == 0.005  # None: the rule (the shell's --lr not given)
    given = FitSettings(steps=50, lr=0.1)
    assert compare_settings("laplace", given) == given


def test_the_shell_makes_the_settings_its_defaults_say():
    from deepprob.examples.options import fit_settings

    for name, defaults in EXAMPLES.items():
        args = parse([name])
        made = fit_settings(args)
        assert (made.steps, made.lr, made.num_particles) == (defaults["steps"], defaults["lr"],
                                                             defaults["num_particles"]), name
    args = parse(["compare", "--model", "m.py:model", "--data", "d.json", "--start", "prior"])
    assert fit_settings(args) == FitSettings(steps=COMPARE["steps"], lr=compare_lr("prior", COMPARE["steps"]),
                                             num_particles=COMPARE["num_particles"], desc="SVI")


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("rows", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("engine", ["pyro", "compiled"])
def test_the_same_fit_from_an_object_or_from_keywords(engine):
    y = torch.tensor([0.3, 1.2, -0.4, 0.9])
    runs = []
    for how in ("object", "keywords"):
        pyro.set_rng_seed(1)
        if how == "object":
            fit = deepprob.fit(model, y, guide="meanfield", settings=FitSettings(steps=60, lr=0.05, engine=engine,
                                                                                   progress=False, elbo_particles=10))
        else:
            fit = deepprob.fit(model, y, guide="meanfield", steps=60, lr=0.05, engine=engine, progress=False,
                               elbo_particles=10)
        runs.append(fit)
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses)
    assert runs[0].elbo == runs[1].elbo and len(runs[0].losses) == 60

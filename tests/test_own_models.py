"""A user's own models, written as Pyro's and NumPyro's examples write them (``tests/corpus/``: ``x @ beta``,
``a[g]``, loops over time, kernel matrices, in-place writes), through everything deepprob does with a model:
``fit`` with every guide on both engines, ``compare`` with the default guides and a NUTS reference,
``to_inference_data``, the shell's ``compare --model``. Where a model also exists in a form that broadcasts, both
forms give the same numbers from the same seed."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import deepprob
from deepprob.cli import main as cli_main
from deepprob.devices import default_dtype
from deepprob.errors import InputError
from deepprob.guides.registry import DEFAULT_GUIDES, GUIDES
from deepprob.logdensity import ModelStructure

CORPUS = Path(__file__).parent / "corpus"
NAMES = sorted(path.stem for path in CORPUS.glob("*.py"))
# how each runs at many draws at once: as written (plate), by torch.func.vmap, or one draw at a time (loop)
BATCHING = {
    "autoregressive": "plate", "changepoint": "vmap", "crossed_effects": "vmap", "deterministic_regression": "vmap",
    "gaussian_mixture": "plate", "gaussian_process": "vmap", "hierarchical_logistic": "vmap",
    "latent_gp": "vmap", "lkj_correlation": "vmap", "negative_binomial_offset": "vmap", "radon_varying_slopes": "vmap",
    "stochastic_volatility": "vmap", "volatility_in_place": "loop",
}
SHORT = {"steps": 40, "elbo_particles": 20, "progress": False, "num_particles": 2}
SMALL_NUTS = {"chains": 2, "warmup": 60, "samples": 60, "max_tree_depth": 6, "until_converged": False}


def corpus_model(name: str):
    spec = importlib.util.spec_from_file_location(f"corpus_{name}", CORPUS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _float64():
    with default_dtype(torch.float64):  # as the shell runs a user's model: float64, as Stan
        yield


def test_the_corpus_is_what_the_issue_asks_for():
    """At least 12 models; each says where its idiom comes from and has simulated data."""
    assert len(NAMES) >= 12 and set(NAMES) == set(BATCHING)
    for name in NAMES:
        module = corpus_model(name)
        assert module.__doc__ and len(module.__doc__) > 80, name
        assert callable(module.model) and callable(module.data), name


@pytest.mark.parametrize("name", NAMES)
def test_each_model_runs_as_it_is_written(name, capsys):
    module = corpus_model(name)
    structure = ModelStructure.of(module.model, module.data()).check()
    assert structure.batching == BATCHING[name]
    if BATCHING[name] != "plate":
        # the fall-back is said once, naming the model's line that does not broadcast
        assert "does not broadcast" in structure.batching_note and "line" in structure.batching_note
    if hasattr(module, "broadcasting"):
        assert ModelStructure.of(module.broadcasting, module.data()).batching == "plate"


@pytest.mark.parametrize("name", NAMES)
def test_fit_on_both_engines(name):
    """A Gaussian family on each engine (every guide, in the slow test below): the compiled engine takes every
    model of the corpus that broadcasts or runs by vmap, the same estimator as Pyro's, and declines loudly the one
    that runs by a loop (a trace would fix its branches)."""
    fit_every(name, ["meanfield", "fullrank"], finite_elbo=True, same_losses=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fit_with_every_guide_on_both_engines(name):
    fit_every(name, list(GUIDES))


def fit_every(name: str, guides: list[str], finite_elbo: bool = False, same_losses: bool = False) -> None:
    """Fit each guide on both engines and draw from it: nothing crashes. (40 steps: a Laplace start on a latent
    time series' degenerate mode can leave an ELBO of -inf or NaN, said as such, not an error.) With
    ``same_losses``, the compiled engine's losses are Pyro's, from the same seed (the same noise)."""
    module = corpus_model(name)
    data = module.data()
    for guide in guides:
        losses = {}
        for engine in ("pyro", "compiled"):
            torch.manual_seed(0)
            try:
                fit = deepprob.fit(module.model, data, guide=guide, engine=engine, **SHORT)
            except InputError as err:  # the compiled engine declines loudly where a guide has no pure form
                assert engine == "compiled" and "--engine compiled: not possible here" in str(err), (guide, err)
                continue
            assert fit.extras["batching"] == BATCHING[name]
            assert isinstance(fit.elbo, float) and (not finite_elbo or math.isfinite(fit.elbo)), (guide, engine)
            idata = deepprob.to_inference_data(fit, num_draws=30)
            assert set(ModelStructure.of(module.model, data).latent) <= set(idata.posterior.data_vars)
            assert idata.sample_stats["lp"].shape == (1, 30), (guide, engine)
            losses[engine] = fit.losses
        assert ("compiled" in losses) == (BATCHING[name] != "loop") or guide not in ("meanfield", "fullrank")
        if same_losses and "compiled" in losses:
            np.testing.assert_allclose(losses["compiled"], losses["pyro"], rtol=1e-5, err_msg=guide)


@pytest.mark.parametrize("name", NAMES)
def test_compare_with_a_nuts_reference(name):
    module = corpus_model(name)
    result = deepprob.compare(module.model, module.data(), reference="nuts", nuts=SMALL_NUTS, steps=150, draws=60,
                              jobs=1)
    assert list(result.table.index) == list(DEFAULT_GUIDES) and not result.failed
    assert result.settings.batching == BATCHING[name]
    for column in ("elbo", "mean_err_sd", "sd_err_sd", "khat"):
        assert result.table[column].notna().all(), column
    assert result.reference.draws is not None and len(result.reference.draws) == 120


@pytest.mark.parametrize("name", sorted(n for n in NAMES if hasattr(corpus_model(n), "broadcasting")))
def test_the_written_and_the_broadcasting_forms_give_the_same_numbers(name):
    """Same seed, same numbers: the fits (both engines, several particles), the fresh ELBO, the draws."""
    module = corpus_model(name)
    data = module.data()
    runs = []
    for model in (module.model, module.broadcasting):
        out = []
        for guide, engine, steps in (("fullrank", "compiled", 300), ("meanfield", "pyro", 30), ("mixture", "pyro", 30)):
            torch.manual_seed(0)
            fit = deepprob.fit(model, data, guide=guide, engine=engine, steps=steps, num_particles=3,
                               elbo_particles=200, progress=False)
            idata = deepprob.to_inference_data(fit, num_draws=50)
            out.append((fit.losses, fit.elbo, {k: v.values for k, v in idata.posterior.items()},
                        idata.log_likelihood, idata.sample_stats["lp"].values))
        runs.append(out)
    # equal to rounding: the two forms sum the same terms in other orders (float64, relative 1e-6 at most)
    for (losses, elbo, posterior, log_lik, lp), (losses_b, elbo_b, posterior_b, log_lik_b, lp_b) in zip(*runs):
        np.testing.assert_allclose(losses, losses_b, rtol=1e-6, atol=1e-8)
        assert elbo == pytest.approx(elbo_b, rel=1e-6)
        for site in posterior:
            np.testing.assert_allclose(posterior[site], posterior_b[site], rtol=1e-6, atol=1e-9)
        for site in log_lik.data_vars:
            np.testing.assert_allclose(log_lik[site].values, log_lik_b[site].values, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(lp, lp_b, rtol=1e-6)


def test_the_shell_compares_a_model_as_written(tmp_path, capsys, monkeypatch):
    from deepprob import progress

    monkeypatch.setattr(progress, "_reported", set())  # said once a process: this one may have said it already
    module = corpus_model("hierarchical_logistic")
    data = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in module.data().items()}
    (tmp_path / "data.json").write_text(json.dumps(data))
    status = cli_main(["compare", "--model", f"{CORPUS / 'hierarchical_logistic.py'}:model", "--data",
                       str(tmp_path / "data.json"), "--reference", "none", "--guides", "meanfield,fullrank",
                       "--steps", "200", "--draws", "100", "--jobs", "1", "--quiet", "--json", "--out",
                       str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["batching"] == "vmap" and "logits = a[g] + x @ beta" in out["batching_note"]
    assert "does not broadcast" in captured.err and captured.err.count("does not broadcast") == 1
    assert set(out["guides"]) == {"meanfield", "fullrank"}


@pytest.mark.parametrize("name", ["hierarchical_logistic", "stochastic_volatility"])
def test_a_users_own_guide_and_the_score_check(name):
    """Pyro's AutoNormal on the Pyro engine with one particle (the issue's report: it ran every step, then failed in
    the final ELBO), then the score check at draws of it: the same z from the written and the broadcasting form."""
    from pyro.infer.autoguide import AutoNormal

    from deepprob.inference.evaluation.score_identity import score_z

    module = corpus_model(name)
    data = module.data()
    fit = deepprob.fit(module.model, data, guide=AutoNormal(module.model), engine="pyro", num_particles=1, steps=50,
                       elbo_particles=100, progress=False)
    assert math.isfinite(fit.elbo)
    idata = deepprob.to_inference_data(fit, num_draws=100)
    draws = {site: idata.posterior[site].values for site in ModelStructure.of(module.model, data).latent}
    z, labels = score_z(module.model, data, draws=draws, num_draws=100)
    z_b, labels_b = score_z(module.broadcasting, data, draws=draws, num_draws=100)
    assert labels == labels_b and torch.isfinite(z).all()
    torch.testing.assert_close(z, z_b, rtol=1e-6, atol=1e-8)

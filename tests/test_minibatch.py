"""Minibatch SVI: plate subsampling with the rows chosen by the fit, the full data everywhere else."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.subsample_messenger import SubsampleMessenger

from deepprob.guides.registry import build_guide
from deepprob.inference.fitting.svi import fit_svi
from deepprob.logdensity import ModelStructure
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation
from deepprob.subsample import FullData, MinibatchIndices, full_data, on_batch


def synthetic(n: int, d: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = torch.bernoulli(torch.sigmoid(X @ torch.linspace(-1, 1, d) + 0.3), generator=g)
    X1 = with_bias(X)
    st = Standardisation.of(X1)
    return st, st.features(X1), y


def normal_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x), subsample_size=4) as rows:
        pyro.sample("y", dist.Normal(mu, 1.0), obs=x[rows])


def test_pyro_private_subsample_helper_is_as_expected():
    """full_data wraps SubsampleMessenger._subsample: fail loudly if Pyro changes it."""
    helper = SubsampleMessenger.__dict__.get("_subsample")
    assert isinstance(helper, staticmethod), "Pyro's SubsampleMessenger._subsample changed: see deepprob.subsample"
    assert list(inspect.signature(helper.__func__).parameters) == [
        "name", "size", "subsample_size", "subsample", "use_cuda", "device"]


def test_full_data_runs_every_row_with_scale_one_and_restores_pyro():
    x = torch.arange(10.0)
    minibatch = poutine.trace(normal_model).get_trace(x).nodes["y"]
    assert minibatch["value"].shape == (4,) and minibatch["scale"] == pytest.approx(10 / 4)
    with full_data():
        full = poutine.trace(normal_model).get_trace(x).nodes["y"]
    assert torch.equal(full["value"], x) and full["scale"] == 1.0
    assert poutine.trace(FullData(normal_model)).get_trace(x).nodes["y"]["value"].shape == (10,)
    # outside the context, Pyro's plate subsamples again
    assert poutine.trace(normal_model).get_trace(x).nodes["y"]["value"].shape == (4,)
    rows = torch.tensor([0, 1, 9, 9])
    assert torch.equal(poutine.trace(on_batch(normal_model, {"data": rows})).get_trace(x).nodes["y"]["value"],
                       x[rows])


def test_structure_is_of_the_full_data_and_names_the_subsampled_plate():
    structure = ModelStructure.of(normal_model, torch.arange(10.0))
    assert structure.subsampled == {"data": (10, 4)}
    assert structure.observed["y"].shape == (10,)


def test_minibatch_log_joint_is_unbiased_for_the_full_one():
    """Averaged over every batch of a partition of the rows, the scaled minibatch log density is the full one
    exactly; a scale that is off (no N/B) fails the same check."""
    x = torch.randn(12)
    structure = ModelStructure.of(normal_model, x)
    log_joint = structure.log_joint_unconstrained(normal_model, x)
    u = torch.tensor([[0.3], [-1.2]])
    batches = [{"data": torch.arange(4 * k, 4 * k + 4)} for k in range(3)]
    average = torch.stack([log_joint(u, b) for b in batches]).mean(0)
    torch.testing.assert_close(average, log_joint(u), rtol=1e-6, atol=1e-5)
    prior = dist.Normal(0.0, 10.0).log_prob(u[:, 0])
    unscaled = prior + (average - prior) / 3.0  # what the sum would be without the N/B scaling
    assert (unscaled - log_joint(u)).abs().min() > 1.0


def test_indices_are_uniform_rows_of_the_right_shape():
    stream = MinibatchIndices({"data": (50, 8)})
    torch.manual_seed(0)
    rows = torch.cat([stream.next()["data"] for _ in range(5000)])
    assert rows.shape == (40000,) and int(rows.min()) == 0 and int(rows.max()) == 49
    counts = torch.bincount(rows, minlength=50).double()
    # chi-square of uniform counts with 49 degrees of freedom: far below 100 unless the rows are not uniform
    assert float(((counts - 800) ** 2 / 800).sum()) < 100


@pytest.mark.parametrize("guide_name, rows", [("meanfield", 3000), ("fullrank", 3000), ("meanfield", 400_000)])
def test_both_engines_take_the_same_minibatch_steps(guide_name, rows):
    """Same seed, same rows and noise each step: the compiled engine ends where Pyro's does (at 400,000 rows
    the C step's gather prefetches the rows it picks)."""
    st, X, y = synthetic(rows)
    ends = {}
    for engine in ("pyro", "compiled"):
        model = LogisticRegression(st, batch_size=256)
        pyro.set_rng_seed(1)
        guide = build_guide(guide_name, model)
        fit = fit_svi(model, guide, X, y, steps=150, lr=0.05, elbo_particles=10, progress=False, engine=engine)
        assert fit.extras["batch_size"] == 256 and f"256 of {rows}" in fit.extras["minibatch"]
        assert fit.extras["compiled_by"] == ("c" if engine == "compiled" else None)
        ends[engine] = {k: v.detach().clone() for k, v in guide.named_parameters()}
    assert ends["compiled"].keys() == ends["pyro"].keys()
    for name, value in ends["pyro"].items():
        torch.testing.assert_close(ends["compiled"][name], value, rtol=2e-3, atol=2e-3, msg=name)


def test_compiled_minibatch_step_is_c_and_flat_in_n():
    """The data is an input of the C step, not one of its buffers: at 10^5 rows it still compiles to C."""
    st, X, y = synthetic(100_000, d=10)
    model = LogisticRegression(st, batch_size=512)
    fit = fit_svi(model, build_guide("meanfield", model), X, y, steps=300, lr=0.05, elbo_particles=0, progress=False,
                  engine="compiled")
    assert fit.extras["compiled_by"] == "c"


def test_minibatch_fit_matches_the_full_batch_posterior():
    """At N = 20,000 the Laplace approximation of the full data is the posterior to a small fraction of an sd;
    a minibatch mean-field fit (B = 512) lands within a third of an sd of its means and 25% of its sds."""
    from deepprob.inference.evaluation.diagnostics import moment_errors
    from deepprob.inference.evaluation.references import laplace_reference

    st, X, y = synthetic(20_000, d=3, seed=3)
    model = LogisticRegression(st, batch_size=512)
    pyro.set_rng_seed(0)
    guide = build_guide("meanfield", model)
    fit = fit_svi(model, guide, X, y, steps=4000, lr=0.05, elbo_particles=100, progress=False)
    with torch.no_grad():
        ours = torch.stack([guide()["weight_std"] for _ in range(4000)])
    reference = laplace_reference(LogisticRegression(st), X, y)["weight_std"]
    mean_err, sd_err = moment_errors(ours, reference)
    assert float(mean_err.max()) < 0.33 and float(sd_err.max()) < 0.25, (mean_err, sd_err)
    assert np.isfinite(fit.elbo)


def test_cli_logreg_with_a_csv_and_a_batch_size(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60_000, 3))
    y = (rng.random(60_000) < 1 / (1 + np.exp(-(X @ [1.0, -0.5, 0.2])))).astype(int)
    path = tmp_path / "big.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="", fmt="%.5g")
    out = subprocess.run([sys.executable, "-m", "deepprob", "logreg", "--data", str(path), "--target", "y",
                          "--guide", "meanfield", "--steps", "2000", "--json", "--quiet", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["batch_size"] == 1024  # auto: above 50,000 rows
    assert metrics["minibatch_check"]["mean_err_sd"] < 1.0
    bad = subprocess.run([sys.executable, "-m", "deepprob", "logreg", "--batch-size", "zero"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--batch-size" in bad.stderr and "Traceback" not in bad.stderr

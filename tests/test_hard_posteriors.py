"""Hard posteriors against references that no guide made: the corpus's stochastic volatility model (100 latent
log-volatilities, a posterior far from Gaussian in φ and σ) and its latent GP (Poisson counts, written centred)
against their long NUTS runs, made once by ``bench/corpus_reference.py`` and shipped thinned
(``tests/corpus/references/NAME.npz``, with the data as the shell reads it, ``NAME.json``).

The fits are slow (a minute each): they run with ``-m slow``. The shipped reference's own checks run always."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import deepprob
from deepprob.devices import default_dtype

CORPUS = Path(__file__).resolve().parent / "corpus"
REFERENCE = CORPUS / "references" / "stochastic_volatility.npz"
SITES = ("mu", "phi", "sigma", "h_std")
ACCURATE = 0.2  # the bar for this model, in reference sds


def volatility():
    spec = importlib.util.spec_from_file_location("corpus_stochastic_volatility", CORPUS / "stochastic_volatility.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference() -> tuple[dict, dict]:
    with np.load(REFERENCE) as shipped:
        return {k: shipped[k].astype(np.float64) for k in SITES}, json.loads(str(shipped["checks"]))


def test_the_shipped_reference_passed_its_checks():
    draws, checks = reference()
    assert checks["converged"] and checks["divergences"] == 0
    assert checks["rhat_max"] < 1.01 and min(checks["ess_bulk_min"], checks["ess_tail_min"]) >= 400
    assert draws["h_std"].shape[0] == 4 and draws["h_std"].shape[2] == 100  # (chains, draws, T)
    assert 0.2 < draws["phi"].std() < 0.5  # far from a point: the data leave φ broad, skewed towards its bound


def test_the_latent_gp_reference_is_the_centred_models_posterior():
    """Made on the model's non-centred form and mapped to its sites: the score of the centred model (the one users
    write) has mean zero under the shipped draws in every coordinate, as it must under its own posterior; the same
    draws with f's map left out (f_white taken for f) fail it."""
    from deepprob.inference.evaluation.score_identity import score_z

    spec = importlib.util.spec_from_file_location("corpus_latent_gp", CORPUS / "latent_gp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with np.load(CORPUS / "references" / "latent_gp.npz") as shipped:
        draws = {k: shipped[k].astype(np.float64) for k in shipped.files if k != "checks"}
        checks = json.loads(str(shipped["checks"]))
    assert checks["converged"] and checks["divergences"] == 0 and draws["f"].shape[::2] == (4, 30)
    data = json.loads((CORPUS / "references" / "latent_gp.json").read_text())
    assert data == {k: v.tolist() for k, v in module.data(0).items()}  # the data the run was made on
    with default_dtype(torch.float64):
        data = module.data(0)
        z, labels = score_z(module.model, data, draws=draws, num_draws=1000)
        assert z.abs().max() < 4.5, (z.abs().max(), labels[int(z.abs().argmax())])
        f = draws["f"]
        white = np.linalg.solve(np.linalg.cholesky(np.stack([
            module.kernel(data["X"], torch.tensor(v), torch.tensor(l)).numpy()
            for v, l in zip(draws["kernel_var"].ravel(), draws["kernel_length"].ravel())])),
            f.reshape(-1, 30, 1))[..., 0].reshape(f.shape)
        z, _ = score_z(module.model, data, draws={**draws, "f": white}, num_draws=1000)
        assert z.abs().max() > 10


def compared(guides, **options):
    module = volatility()
    draws, _ = reference()
    with default_dtype(torch.float64):
        return deepprob.compare(module.model, module.data(0), guides=guides, reference=draws, var_names=list(SITES),
                                **options)


@pytest.mark.slow
def test_full_rank_by_the_importance_weighted_bound_is_within_0_2_sds():
    """The ELBO's mode seeking leaves full rank too narrow here (sd 0.48 off); the importance-weighted bound with
    K = 128 covers the mass: within 0.2 reference sds in every mean and sd of the 103 scalars. Its verdict may not be
    yes (that asks 0.1), and is not where the measurement is worse than 0.1."""
    row = compared(["fullrank"], objective="iwae:128", lr=0.01, steps=20000).rows["fullrank"]
    assert row["mean_err_sd"] < ACCURATE and row["sd_err_sd"] < ACCURATE, row
    assert row["trust"] != "yes" or max(row["mean_err_sd"], row["sd_err_sd"]) < 0.1 + 0.05


@pytest.mark.slow
def test_with_default_settings_no_guide_is_trusted_and_none_is_accurate():
    """The verdict agrees with the measurement: no default guide is within 0.2, and none is called trusted."""
    result = compared(None)
    for name, row in result.rows.items():
        if name.endswith("+psis"):
            continue
        accurate = max(row["mean_err_sd"], row["sd_err_sd"]) <= ACCURATE
        assert not accurate and row["trust"] == "no", (name, row)


@pytest.mark.slow
def test_auto_reaches_the_latent_gp_of_posteriordb_within_0_1_sds():
    """gp_pois_regr: no Gaussian nor the mixture comes within 0.4 sds; auto climbs to its deep IAF, which does (as it
    is, or through its corrected draws), and says which rung it chose."""
    from deepprob.inference.evaluation.posteriors import database, load_posterior

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriordb" / "posterior_database"
    if not shared.is_dir():
        pytest.skip("posteriordb's posteriors are not beside the repository (../shared)")
    problem = load_posterior("gp_pois_regr-gp_pois_regr", database(shared))
    result = deepprob.compare(problem.model, problem.data, guides=["auto"], reference=problem.draws,
                              reference_latents=problem.reference_latents)
    auto = result.rows["auto"]
    stands_by = result.rows.get("auto+psis", auto) if auto["trust"] == "corrected" else auto
    assert auto["family"] == "iaf:deep" and auto["trust"] in ("yes", "corrected"), auto["trust_reason"]
    assert max(stands_by["mean_err_sd"], stands_by["sd_err_sd"]) <= 0.1, stands_by

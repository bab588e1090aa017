"""Hard posteriors against references that no guide made: the corpus's stochastic volatility model (100 latent
log-volatilities, a posterior far from Gaussian in φ and σ) against its long NUTS run, made once by
``bench/corpus_reference.py`` and shipped thinned (``tests/corpus/references/stochastic_volatility.npz``).

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

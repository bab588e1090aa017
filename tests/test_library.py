"""deepprob as a library: fit, to_inference_data and compare on a user's own Pyro models, and the same from
the shell (``deepprob compare --model FILE.py:FUNC``), with NUTS, exact and given reference draws."""

import json
import math
import textwrap
import zipfile

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import pytest
import torch

import deepprob
from deepprob.cli import main as cli_main
from deepprob.datasets.stan_json import load_model_data
from deepprob.devices import default_dtype
from deepprob.inference.evaluation.references import Exact

EIGHT_SCHOOLS = textwrap.dedent('''
    import pyro
    import pyro.distributions as dist


    def model(data):
        """Eight schools, non-centred (posteriordb's eight_schools_noncentered)."""
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("schools", data["J"]):
            theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            theta = pyro.deterministic("theta", mu + tau * theta_trans)
            pyro.sample("y", dist.Normal(theta, data["sigma"]), obs=data["y"])
''')
EIGHT_SCHOOLS_DATA = {"J": 8, "y": [28, 8, -3, 7, -1, 1, 18, 12], "sigma": [15, 10, 16, 11, 9, 11, 10, 18]}
SETTINGS = {"steps": 3000, "draws": 1000, "seed": 3}
NUTS = {"chains": 2, "warmup": 300, "samples": 300, "max_tree_depth": 10}
COMPARED = ("elbo", "mean_err_sd", "sd_err_sd", "w2", "khat", "elpd_loo")


@pytest.fixture(scope="module")
def eight_schools(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eight_schools")
    (folder / "eight_schools.py").write_text(EIGHT_SCHOOLS)
    (folder / "data.json").write_text(json.dumps(EIGHT_SCHOOLS_DATA))
    namespace = {}
    exec(EIGHT_SCHOOLS, namespace)  # noqa: S102 - the test's own model, as a user writes it
    return folder, namespace["model"]


@pytest.fixture(scope="module")
def eight_schools_comparison(eight_schools):
    folder, model = eight_schools
    with default_dtype(torch.float64):  # as the shell runs a user's model: float64, as Stan
        data = load_model_data(folder / "data.json", torch.float64)
        return deepprob.compare(model, data, reference="nuts", nuts=NUTS, **SETTINGS)


def test_compare_a_users_model_against_nuts(eight_schools_comparison):
    result = eight_schools_comparison
    table = result.table
    guides = [name for name in table.index if not name.endswith("+psis")]  # +psis: a corrected guide's draws
    assert isinstance(table, pd.DataFrame) and guides == list(deepprob.DEFAULT_GUIDES)
    assert all(name.removesuffix("+psis") in guides for name in table.index)
    for column in ("elbo", "seconds", "mean_err_sd", "sd_err_sd", "w2", "khat", "elpd_loo"):
        assert table.loc[guides, column].notna().all(), column
    # the parameters the model's sample and deterministic sites share with the reference, Stan's names
    labels = set(result.rows["fullrank"]["mean_err_sd_each"])
    assert labels == {"mu", "tau", *(f"theta_trans[{i}]" for i in range(1, 9)), *(f"theta[{i}]" for i in range(1, 9))}
    assert table.loc["fullrank", "mean_err_sd"] < 0.3
    assert result.reference_stats["method"] == "nuts"
    idata = result.inference_data
    assert set(idata) == {*table.index, "reference"}
    assert idata["fullrank"].posterior["theta"].shape == (1, 1000, 8)
    assert list(idata["fullrank"].posterior["theta"].coords["theta_dim_0"].values) == list(range(1, 9))
    # the chains drew until the checks passed: at least the 300 draws asked, R-hat < 1.01, ESS >= 400
    chains, draws, _ = idata["reference"].posterior["theta"].shape
    assert chains == 2 and draws >= 300 and result.reference_stats["converged"]
    assert result.reference_stats["rhat_max"] < 1.01 and result.reference_stats["ess_bulk_min"] >= 400
    out = json.loads(result.to_json())
    assert set(out["guides"]) == set(table.index) and out["reference_stats"]["method"] == "nuts"


def test_the_shell_gives_the_same_numbers_for_the_same_seed(eight_schools, eight_schools_comparison, tmp_path,
                                                           capsys):
    folder, _ = eight_schools
    argv = ["compare", "--model", f"{folder / 'eight_schools.py'}:model", "--data", str(folder / "data.json"),
            "--steps", str(SETTINGS["steps"]), "--draws", str(SETTINGS["draws"]), "--seed", str(SETTINGS["seed"]),
            "--chains", "2", "--warmup", "300", "--samples", "300", "--json", "--quiet", "--out", str(tmp_path)]
    assert cli_main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["guides"]) == set(eight_schools_comparison.rows)
    for guide, row in eight_schools_comparison.rows.items():
        for key in [k for k in COMPARED if k in row]:  # a +psis row has no ELBO nor k-hat of its own
            assert out["guides"][guide][key] == pytest.approx(row[key], rel=1e-9, abs=1e-12), (guide, key)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"eight_schools_fullrank.nc", "eight_schools_reference.nc", "eight_schools_forest.png",
            "eight_schools_elbo.png", "eight_schools_pair_meanfield.png"} <= names


def correlated_regression(n=40, rho=0.95):
    """y = x1 w1 + x2 w2 + noise with corr(x1, x2) = rho: the posterior of (w1, w2) is strongly correlated."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    X = torch.stack([z[:, 0], rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]], 1)
    y = X @ torch.tensor([1.0, -0.5], dtype=torch.float64) + torch.randn(n, generator=g, dtype=torch.float64)

    def model(X, y):
        w = pyro.sample("w", dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1))
        with pyro.plate("data", len(X)):
            pyro.sample("y", dist.Normal((X * w).sum(-1), 1.0), obs=y)

    precision = torch.eye(2, dtype=torch.float64) + X.T @ X
    exact = torch.distributions.MultivariateNormal(torch.linalg.solve(precision, X.T @ y), precision_matrix=precision)
    return model, (X, y), exact


def test_an_exact_reference_gives_kl_and_mean_field_misses_the_correlation():
    model, args, exact = correlated_regression()
    result = deepprob.compare(model, *args, guides=["meanfield", "fullrank"], reference=exact, steps=4000,
                              draws=4000)
    table = result.table
    assert result.reference_stats["method"] == "exact"
    assert table.loc["fullrank", "kl_to_exact"] < 0.01 < table.loc["meanfield", "kl_to_exact"]
    # mean-field's sds are too small by about 1 - sqrt(1 - rho^2) = 0.69 of the reference's; full rank's are right
    assert table.loc["meanfield", "sd_err_sd"] > 0.5 > 0.1 > table.loc["fullrank", "sd_err_sd"]
    assert table.loc["fullrank", "mean_err_sd"] < 0.1
    assert deepprob.compare(model, *args, guides=["fullrank"], reference=Exact(exact), steps=100,
                            draws=100).reference_stats["method"] == "exact"


def test_fit_and_to_inference_data_for_one_fit():
    model, args, exact = correlated_regression()
    fit = deepprob.fit(model, *args, guide="fullrank", steps=3000)
    assert fit.elbo < 0 and fit.extras["engine"] in ("compiled", "eager")
    idata = deepprob.to_inference_data(fit, num_draws=500)
    assert idata.posterior["w"].shape == (1, 500, 2)
    assert set(idata.groups()) >= {"posterior", "log_likelihood", "posterior_predictive", "observed_data"}
    np.testing.assert_allclose(idata.posterior["w"].values.mean((0, 1)), exact.mean.numpy(), atol=0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument.*stepz"):
        deepprob.fit(model, *args, stepz=10)


# --- flat priors, given draws, posteriordb's format ------------------------------------------------------------

FLAT = textwrap.dedent('''
    import pyro
    import pyro.distributions as dist
    from torch.distributions import constraints


    def model(data):
        """A Normal with flat priors on its mean and its sd, as a Stan model that declares no prior."""
        mu = pyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
        sigma = pyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
        with pyro.plate("data", data["N"]):
            pyro.sample("y", dist.Normal(mu, sigma), obs=data["y"])
''')


def flat_posterior_draws(y: np.ndarray, chains: int, draws: int, seed: int = 0) -> list[dict]:
    """Exact posterior draws of FLAT's model in posteriordb's format: p(mu, sigma) ~ 1 on sigma > 0 gives
    sigma^2 ~ Inv-Gamma((n - 2) / 2, S / 2), S the sum of squares about the mean, and mu ~ N(ybar, sigma^2 / n)."""
    rng = np.random.default_rng(seed)
    n, ybar = len(y), y.mean()
    s = ((y - ybar) ** 2).sum()
    out = []
    for _ in range(chains):
        sigma2 = (s / 2) / rng.gamma((n - 2) / 2, size=draws)
        mu = rng.normal(ybar, np.sqrt(sigma2 / n))
        out.append({"mu": mu.tolist(), "sigma": np.sqrt(sigma2).tolist()})
    return out


@pytest.fixture(scope="module")
def flat_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flat")
    y = np.random.default_rng(1).normal(3.0, 2.0, size=30)
    (folder / "flat.py").write_text(FLAT)
    (folder / "data.json").write_text(json.dumps({"N": len(y), "y": y.tolist()}))
    with zipfile.ZipFile(folder / "draws.json.zip", "w") as archive:
        archive.writestr("draws.json", json.dumps(flat_posterior_draws(y, chains=4, draws=1000)))
    return folder


def run_json(capsys, argv) -> dict:
    assert cli_main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_reference_draws_in_posteriordb_format_and_flat_priors(flat_model, tmp_path, capsys):
    folder = flat_model
    out = run_json(capsys, ["compare", "--model", f"{folder / 'flat.py'}:model", "--data", str(folder / "data.json"),
                            "--reference-draws", str(folder / "draws.json.zip"), "--draws", "2000", "--json",
                            "--quiet", "--out", str(tmp_path)])
    assert out["reference"] == "draws" and out["reference_stats"]["chains"] == 4
    assert out["reference_stats"]["draws"] == 4000 and out["reference_stats"]["rhat_max"] < 1.01
    rows = out["guides"]
    assert {name for name in rows if not name.endswith("+psis")} == set(deepprob.DEFAULT_GUIDES)
    assert set(rows["fullrank"]["mean_err_sd_each"]) == {"mu", "sigma"}
    for guide in ("fullrank", "mixture"):  # sigma's posterior is skewed: these get the means
        assert rows[guide]["mean_err_sd"] < 0.1, guide
    assert all(math.isfinite(rows[g]["elbo"]) for g in deepprob.DEFAULT_GUIDES)  # each started without sampling a prior


def test_a_flat_prior_model_with_a_nuts_reference(flat_model, tmp_path, capsys):
    folder = flat_model
    out = run_json(capsys, ["compare", "--model", f"{folder / 'flat.py'}:model", "--data", str(folder / "data.json"),
                            "--guides", "meanfield,fullrank", "--chains", "2", "--warmup", "200", "--samples", "300",
                            "--steps", "2000", "--draws", "500", "--json", "--quiet", "--out", str(tmp_path)])
    assert out["reference"] == "nuts" and out["guides"]["fullrank"]["mean_err_sd"] < 0.3


@pytest.mark.parametrize("case, message", [
    ("unknown name", "--reference-draws {tmp}/draws.json: the model records no site 'beta'; its sites are mu, sigma"),
    ("ragged", "the chains have different numbers of draws of 'mu'"),
    ("not chains", "expected a list of chains"),
    ("partial", "'theta' is given in part; missing theta[2]"),
    ("missing data", "--data {folder}/nope.json: no such file"),
    ("bad model", "has no function 'modle' (it has model)"),
    ("bad json", "not valid JSON"),
    ("npz missing", "--reference-draws {tmp}/draws.npz: no such file"),
    ("npz not numpy", "--reference-draws {tmp}/draws.npz: not a NumPy .npz file"),
    ("npz no chains", "expected arrays (chains, draws, ...) of numbers, one a site"),
])
def test_bad_files_are_one_line_and_exit_2(flat_model, tmp_path, capsys, case, message):
    folder = flat_model
    model, data, draws = f"{folder / 'flat.py'}:model", str(folder / "data.json"), tmp_path / "draws.json"
    chains = {"unknown name": [{"mu": [0.0, 1.0], "beta": [0.0, 1.0]}], "ragged": [{"mu": [0.0, 1.0]}, {"mu": [0.0]}],
              "not chains": [1, 2], "partial": [{"mu": [0.0, 1.0], "theta[1]": [0.0, 1.0]}]}.get(case)
    draws.write_text(json.dumps(chains))
    if case == "partial":  # a model with a vector site
        (tmp_path / "vector.py").write_text(FLAT.replace('"sigma", dist.ImproperUniform(constraints.positive, (), ())',
                                                         '"sigma", dist.ImproperUniform(constraints.positive, (), ())'
                                                         ')\n    theta = pyro.sample("theta", dist.Normal(0.0, 1.0)'
                                                         '.expand([2]).to_event(1)'))
        model = f"{tmp_path / 'vector.py'}:model"
    if case == "missing data":
        data = f"{folder}/nope.json"
    if case == "bad model":
        model = f"{folder / 'flat.py'}:modle"
    if case == "bad json":
        data = str(tmp_path / "bad.json")
        (tmp_path / "bad.json").write_text("{'N': 3}")
    if case.startswith("npz"):
        draws = tmp_path / "draws.npz"
        if case == "npz not numpy":
            draws.write_text("mu,sigma\n0,1\n")
        if case == "npz no chains":
            np.savez(draws, mu=np.zeros(3), checks="{}")
    argv = ["compare", "--model", model, "--data", data, "--reference-draws", str(draws), "--quiet", "--out",
            str(tmp_path / "out")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("deepprob compare: error: ")
    assert message.format(folder=folder, tmp=tmp_path) in lines[0], lines[0]

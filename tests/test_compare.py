"""``deepprob compare`` on tiny problems, its options, and the InferenceData each single-example run stores."""

import json

import pytest

from deepprob.cli import main as cli_main
from deepprob.examples.commands import UsageError, parse
from deepprob.inference.evaluation.arviz_data import az


def run_json(capsys, *argv) -> dict:
    assert cli_main([*argv, "--json", "--quiet", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_options_come_from_the_model_and_the_run_options_go_anywhere():
    args = parse(["compare", "bnn", "--hidden", "3", "--json"])
    assert (args.model, args.hidden, args.json, args.steps, args.reference) == ("bnn", 3, True, 2000, "nuts")
    args = parse(["compare", "--json", "--seed", "4", "linreg", "--alpha", "2"])
    assert (args.json, args.seed, args.alpha, args.steps, args.reference) == (True, 4, 2.0, 6000, "exact")
    assert args.guides == ["laplace", "meanfield", "fullrank", "lowrank", "mixture"]
    with pytest.raises(UsageError, match="unrecognized arguments: --hidden 3"):
        parse(["compare", "linreg", "--hidden", "3"])  # a bnn option
    args = parse(["compare", "--model", "m.py:model", "--data", "d.json", "--guides", "fullrank"])
    assert (args.model, args.data, args.guides, args.reference, args.dtype) == (
        "m.py:model", "d.json", ["fullrank"], "nuts", "float64")


@pytest.mark.parametrize("argv, message", [
    (["linreg", "--guides", "fullrank,fullrnak"], "argument --guides: unknown guide 'fullrnak'; expected one of"),
    (["logreg", "--reference", "exact"], "argument --reference: invalid choice: 'exact'"),
])
def test_bad_options_are_one_line(capsys, argv, message):
    assert cli_main(["compare", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_the_single_guide_option_is_refused_with_a_pointer(capsys, tmp_path):
    assert cli_main(["compare", "linreg", "--guide", "fullrank", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--guide fullrank: compare fits several guides; use --guides" in err and "Traceback" not in err


def test_compare_linreg_tiny(capsys, tmp_path):
    out = run_json(capsys, "compare", "linreg", "--guides", "laplace,meanfield,mixture", "--num-points", "15",
                   "--steps", "200", "--draws", "300", "--out", str(tmp_path))
    assert (out["example"], out["model"], out["reference"]) == ("compare", "linreg", "exact")
    # (300 draws may not show a guide within 0.1 sds with confidence: a guide may come with its corrected row)
    own = {name: row for name, row in out["guides"].items() if not name.endswith("+psis")}
    assert list(own) == ["laplace", "meanfield", "mixture"]
    for row in own.values():
        for key in ("elbo", "seconds", "khat", "elpd_loo", "kl_to_exact", "mean_err_sd", "sd_err_sd", "w2"):
            assert isinstance(row[key], float), key
        assert row["kl_to_exact"] >= 0
    assert out["reference_stats"]["method"] == "exact"
    # KL(q || p) = log p(y) - ELBO: both are reported, and the ELBO is a Monte Carlo estimate
    laplace = out["guides"]["laplace"]
    assert laplace["kl_to_exact"] == pytest.approx(out["reference_stats"]["log_evidence"] - laplace["elbo"],
                                                   abs=0.05 + 0.05 * laplace["kl_to_exact"])
    names = {p.name for p in tmp_path.iterdir()}
    assert {"linreg_forest.png", "linreg_elbo.png", "linreg_pair_meanfield.png", "linreg_reference.nc",
            "linreg_mixture.nc"} <= names
    reference = az.from_netcdf(tmp_path / "linreg_reference.nc")
    assert reference.posterior["weight"].dims == ("chain", "draw", "feature")


def test_results_do_not_depend_on_the_worker_processes(capsys, tmp_path):
    argv = ["compare", "logreg", "--guides", "laplace,meanfield,mixture", "--num-points", "60", "--steps", "150",
            "--engine", "compiled", "--draws", "100", "--chains", "1", "--warmup", "30", "--samples", "50"]
    serial = run_json(capsys, *argv, "--jobs", "1", "--out", str(tmp_path / "serial"))
    forked = run_json(capsys, *argv, "--jobs", "2", "--out", str(tmp_path / "forked"))
    assert (serial["jobs"], forked["jobs"]) == (1, 2)
    for out in (serial, forked):
        out["reference_stats"].pop("seconds")
        for row in out["guides"].values():
            row.pop("seconds")
    assert forked["guides"] == serial["guides"] and forked["reference_stats"] == serial["reference_stats"]
    assert (tmp_path / "forked" / "logreg_mixture.nc").exists()


def test_compare_logreg_with_a_small_nuts_reference(capsys, tmp_path):
    out = run_json(capsys, "compare", "logreg", "--guides", "fullrank", "--num-points", "80", "--steps", "300",
                   "--draws", "200", "--chains", "2", "--warmup", "100", "--samples", "100", "--no-extend",
                   "--out", str(tmp_path))
    stats = out["reference_stats"]
    assert stats["method"] == "nuts" and stats["chains"] == 2 and stats["draws"] == 200 and stats["rounds"] == 1
    for key in ("rhat_max", "ess_bulk_min", "ess_tail_min", "elpd_loo", "accuracy", "log_loss", "far_point"):
        assert isinstance(stats[key], float), key
    row = out["guides"]["fullrank"]
    for key in ("khat", "mean_err_sd", "sd_err_sd", "accuracy", "log_loss", "far_point", "mmd2"):
        assert isinstance(row[key], float), key
    assert set(row["mean_err_sd_each"]) == {"weight[bias]", "weight[x1]", "weight[x2]"}
    assert "kl_to_exact" not in row
    assert (tmp_path / "logreg_surfaces.png").exists()
    assert az.from_netcdf(tmp_path / "logreg_reference.nc").posterior.sizes["chain"] == 2


def test_compare_bnn_in_function_space(capsys, tmp_path):
    out = run_json(capsys, "compare", "bnn", "--guides", "meanfield,laplace", "--num-points", "40", "--hidden", "2",
                   "--steps", "100", "--draws", "100", "--chains", "2", "--warmup", "20", "--samples", "20",
                   "--max-tree-depth", "4", "--out", str(tmp_path))
    for row in out["guides"].values():
        assert 0 <= row["accuracy"] <= 1 and row["log_loss"] > 0
        assert set(row["mean_err_sd_each"]) == {f"f[{i}]" for i in range(1, 11)}  # 10 held-out points
    assert "rhat_max_sites" in out["reference_stats"]
    none = run_json(capsys, "compare", "bnn", "--guides", "meanfield", "--num-points", "40", "--hidden", "2",
                    "--steps", "50", "--draws", "50", "--reference", "none", "--out", str(tmp_path / "none"))
    assert none["reference"] == "none" and "mean_err_sd" not in none["guides"]["meanfield"]
    assert "accuracy" in none["guides"]["meanfield"]


@pytest.mark.parametrize("argv, groups", [
    (["linreg", "--steps", "50", "--num-points", "12"], ("posterior", "log_likelihood", "posterior_predictive")),
    (["logreg", "--steps", "50", "--num-points", "50"], ("posterior", "log_likelihood", "observed_data")),
    (["bnn", "--steps", "50", "--num-points", "40", "--hidden", "2"], ("posterior", "constant_data")),
])
def test_single_examples_store_their_fit(capsys, tmp_path, argv, groups):
    out = run_json(capsys, *argv, "--out", str(tmp_path))
    idata = az.from_netcdf(out["inference_data"])
    assert all(hasattr(idata, group) for group in groups)
    assert isinstance(out["khat"], float) and isinstance(out["elpd_loo"], float)


def test_single_example_prints_az_summary(capsys, tmp_path):
    assert cli_main(["linreg", "--steps", "50", "--num-points", "12", "--device", "cpu", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "az.summary" in text and "weight[intercept]" in text and "hdi_97%" in text


@pytest.mark.slow
def test_acceptance_linreg(capsys, tmp_path):
    out = run_json(capsys, "compare", "linreg", "--guides", "fullrank,laplace,meanfield", "--out", str(tmp_path))
    rows = out["guides"]
    for name in ("fullrank", "laplace"):
        assert rows[name]["kl_to_exact"] <= 0.01 and rows[name]["khat"] < 0.5, name
    assert rows["meanfield"]["kl_to_exact"] > rows["fullrank"]["kl_to_exact"]


@pytest.mark.slow
def test_acceptance_logreg(capsys, tmp_path):
    out = run_json(capsys, "compare", "logreg", "--reference", "nuts", "--out", str(tmp_path))
    rows = out["guides"]
    assert out["reference_stats"]["rhat_max"] < 1.01
    assert max(rows["fullrank"]["mean_err_sd_each"].values()) < 0.2
    assert all(row["khat"] == row["khat"] and abs(row["khat"]) < float("inf") for row in rows.values())


def test_a_guide_without_a_density_has_no_kl_and_no_finite_khat_in_every_command(capsys, tmp_path):
    """delta (a point mass) and svgd (particles): KL(q || exact) is infinite (no density), k-hat infinite for a point
    mass and undefined for particles: null in --json, from the single-model command and from compare alike; a
    guide with a density gets a KL >= 0 from both."""
    common = ["--steps", "300", "--out", str(tmp_path)]
    compared = run_json(capsys, "compare", "linreg", "--guides", "delta,svgd,meanfield", "--draws", "200", *common)
    for guide in ("delta", "svgd", "meanfield"):
        single = run_json(capsys, "linreg", "--guide", guide, "--draws", "200", *common)
        row = compared["guides"][guide]
        if guide == "meanfield":
            assert single["kl_to_exact"] >= 0 and row["kl_to_exact"] >= 0
            assert single["khat"] is not None and row["khat"] is not None
        else:
            assert single["kl_to_exact"] is None and row["kl_to_exact"] is None, guide
            assert single["khat"] is None and row["khat"] is None, guide
    assert cli_main(["linreg", "--guide", "delta", "--steps", "300", "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert "KL(q || exact) = inf" in capsys.readouterr().out


def test_a_figure_that_cannot_be_drawn_loses_no_result(capsys, tmp_path, monkeypatch):
    """A plot that fails (ArviZ's pair plot of a guide collapsed to a point: "Too many bins for data range") is
    skipped with one line; the table, the --json line and the NetCDF files are all there."""
    import deepprob.inference.evaluation.compare_figures as figures

    def broken(*args, **kwargs):
        raise ValueError("Too many bins for data range. Cannot create 10 finite-sized bins.")

    monkeypatch.setattr(figures, "_pair_plot", broken)
    assert cli_main(["compare", "linreg", "--guides", "meanfield,fullrank", "--steps", "300", "--draws", "200",
                     "--json", "--out", str(tmp_path), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    # (200 draws may not show a guide within 0.1 sds with confidence: then its corrected row comes too)
    assert {g for g in out["guides"] if not g.endswith("+psis")} == {"meanfield", "fullrank"}
    assert out["guides"]["fullrank"]["kl_to_exact"] >= 0
    skipped = [line for line in captured.err.splitlines() if "skipped" in line]
    assert len(skipped) == len(out["guides"]) and all("Too many bins" in line and "_pair_" in line for line in skipped)
    assert (tmp_path / "linreg_meanfield.nc").exists() and (tmp_path / "linreg_forest.png").exists()
    assert not (tmp_path / "linreg_pair_fullrank.png").exists()
    assert "linreg_forest.png" in " ".join(out["files"]) and "pair" not in " ".join(out["files"])

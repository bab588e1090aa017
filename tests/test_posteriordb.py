"""posteriordb's posteriors: every Pyro translation against its gold-standard draws (the score has mean zero under
the posterior, and a perturbed model fails), the database's layout, and ``compare --posterior``."""

import functools
import json
from pathlib import Path

import pytest
import torch

from deepprob.cli import main as cli_main
from deepprob.datasets.posteriordb import BUNDLED, PosteriorDatabase
from deepprob.devices import default_dtype
from deepprob.errors import InputError
from deepprob.inference.evaluation.draws import draws_from_latents
from deepprob.inference.evaluation.posteriors import load_posterior, translated
from deepprob.inference.evaluation.references import given_draws
from deepprob.inference.evaluation.score_identity import score_z
from deepprob.logdensity import ModelStructure
from deepprob.models.posteriordb import TRANSLATIONS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriordb" / "posterior_database"
BUNDLED_NAME = "eight_schools-eight_schools_noncentered"
TWELVE = ["arK-arK", "diamonds-diamonds", "earnings-logearn_interaction", BUNDLED_NAME, "garch-garch11",
          "gp_pois_regr-gp_pois_regr", "kidiq-kidscore_momiq", "kilpisjarvi_mod-kilpisjarvi",
          "low_dim_gauss_mix-low_dim_gauss_mix", "mesquite-logmesquite", "nes2000-nes", "sblri-blr"]
# a model that is not the one that made the draws: the data of its likelihood changed a little
PERTURB = {
    "arK": lambda d: dict(d, y=d["y"] * 1.05),
    "blr": lambda d: dict(d, y=d["y"] * 1.02),
    "diamonds": lambda d: dict(d, Y=d["Y"] * 1.02),
    "eight_schools_noncentered": lambda d: dict(d, sigma=d["sigma"] * 0.5),
    "garch11": lambda d: dict(d, y=d["y"] * 1.02),
    "gp_pois_regr": lambda d: dict(d, k=d["k"] + 2),
    "kidscore_momiq": lambda d: dict(d, kid_score=d["kid_score"] * 1.02),
    "kilpisjarvi": lambda d: dict(d, y=d["y"] * 1.02),
    "logearn_interaction": lambda d: dict(d, earn=d["earn"] * 1.05),
    "logmesquite": lambda d: dict(d, weight=d["weight"] * 1.05),
    "low_dim_gauss_mix": lambda d: dict(d, y=d["y"] * 1.02),
    "nes": lambda d: dict(d, partyid7=d["partyid7"] * 1.02),
}


def database_for(name: str) -> PosteriorDatabase:
    if SHARED.is_dir():
        return PosteriorDatabase(SHARED)
    if name != BUNDLED_NAME:
        pytest.skip(f"posteriordb's copy is not at {SHARED}")
    return PosteriorDatabase(BUNDLED)


def z_of(name: str, perturb=None) -> tuple[torch.Tensor, list[str]]:
    db = database_for(name)
    with default_dtype(torch.float64):
        problem = load_posterior(name, db)
        data = problem.data if perturb is None else perturb(problem.data)
        latents = problem.reference_latents
        if latents is not None:
            latents = functools.partial(latents.func, data=data)
        return score_z(problem.model, data, draws=problem.draws, reference_latents=latents, num_draws=500)


@pytest.mark.parametrize("name", TWELVE)
def test_each_translation_has_a_score_of_mean_zero_under_the_reference(name):
    """E[grad log p(u, y)] = 0 under the posterior: at 500 reference draws every coordinate's z is small."""
    z, labels = z_of(name)
    worst = int(z.abs().argmax())
    assert float(z.abs().max()) < 4, f"{labels[worst]}: z = {float(z[worst]):.2f}"


@pytest.mark.parametrize("name", TWELVE)
def test_the_score_check_catches_a_perturbed_model(name):
    model_name = database_for(name).posterior(name).model_name
    z, labels = z_of(name, PERTURB[model_name])
    assert float(z.abs().max()) > 6, labels


def test_every_model_is_translated_and_names_every_reference_parameter():
    if not SHARED.is_dir():
        pytest.skip(f"posteriordb's copy is not at {SHARED}")
    db = PosteriorDatabase(SHARED)
    assert translated(db) == TWELVE and len(TRANSLATIONS) == 12
    for name in TWELVE:
        with default_dtype(torch.float64):
            problem = load_posterior(name, db)
            structure = ModelStructure.of(problem.model, problem.data)
            given, chains = given_draws(problem.draws, structure)  # raises if the model records a name not
            assert chains == 10 and len(next(iter(given.values()))) == 10000
            if problem.reference_latents is not None:
                # the latent sites from the draws' parameters, put through the model, give those parameters back
                few = {k: v[:50] for k, v in given.items()}
                draws = draws_from_latents(problem.model, problem.reference_latents(few), problem.data)
                for key, value in few.items():
                    torch.testing.assert_close(draws.sites()[key].double(), value.double(), rtol=1e-8, atol=1e-8)


def test_the_bundled_copy_has_the_databases_layout_and_its_licence():
    db = PosteriorDatabase(BUNDLED)
    assert db.names() == [BUNDLED_NAME]
    assert (BUNDLED.parent / "LICENCE.md").read_text().startswith("BSD 3-Clause License")
    posterior = db.posterior(BUNDLED_NAME)
    assert posterior.model_name == "eight_schools_noncentered" and posterior.stan_file.is_file()
    assert set(posterior.reference_draws()) == {"mu", "tau", *(f"theta[{i}]" for i in range(1, 9))}


def test_bad_databases_and_names_are_one_line(tmp_path, capsys):
    with pytest.raises(InputError, match="not a posteriordb folder, expected the folders posteriors"):
        PosteriorDatabase(tmp_path)
    (tmp_path / "posterior_database").mkdir()
    with pytest.raises(InputError, match="it has a posterior_database folder: give that"):
        PosteriorDatabase(tmp_path)
    for argv, message in [
        (["--posterior", "eight_schools"], f"--posterior 'eight_schools': no such posterior in {BUNDLED}; available: "
                                           f"{BUNDLED_NAME}"),
        (["--posterior", BUNDLED_NAME, "--posteriordb", str(tmp_path)], f"--posteriordb {tmp_path}: not a posteriordb"),
        (["--posterior", BUNDLED_NAME, "--data", "x.json"], "the posterior brings its model, data and reference draws"),
    ]:
        assert cli_main(["compare", *argv, "--quiet", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def test_compare_a_posterior_by_name_against_its_reference(tmp_path, capsys):
    """The bundled posterior, from the shell, with the guides' default start (the Laplace approximation)."""
    argv = ["compare", "--posterior", BUNDLED_NAME, "--guides", "fullrank,mixture", "--steps", "3000", "--draws",
            "1000", "--json", "--quiet", "--out", str(tmp_path)]
    assert cli_main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stats = out["reference_stats"]
    assert out["reference"] == "draws" and stats["chains"] == 10 and stats["draws"] == 10000
    assert stats["compared"] == ["mu", "tau", *(f"theta[{i}]" for i in range(1, 9))]
    assert "elpd_loo" in stats  # the reference draws, mapped to the model's theta_trans, went through the model
    for guide in ("fullrank", "mixture"):
        row = out["guides"][guide]
        assert row["mean_err_sd"] < 0.3 and row["sd_err_sd"] < 0.35, (guide, row["mean_err_sd"], row["sd_err_sd"])
        assert row["gradient_evaluations"] > 3000
    assert (tmp_path / f"{BUNDLED_NAME}_forest.png").exists()


def corrupted_copy(folder: Path, corrupt) -> Path:
    """The bundled database copied to ``folder``, its reference draws passed through ``corrupt``."""
    import shutil
    import zipfile

    root = Path(shutil.copytree(BUNDLED, folder / "posterior_database"))
    path = root / "reference_posteriors" / "draws" / "draws" / f"{BUNDLED_NAME}.json.zip"
    with zipfile.ZipFile(path) as archive:
        inner = archive.namelist()[0]
        chains = json.loads(archive.read(inner))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(inner, json.dumps(corrupt(chains)))
    return root


@pytest.mark.parametrize("corrupt, message", [
    (lambda chains: [chains[0], {k: v[:-5] for k, v in chains[1].items()}, *chains[2:]],
     "the chains have different numbers of draws of 'theta[1]'"),
    (lambda chains: [dict(c, zeta=c["mu"]) for c in chains], "the model records no site 'zeta'"),
])
def test_a_database_whose_draws_do_not_fit_the_model_is_one_line(tmp_path, capsys, corrupt, message):
    root = corrupted_copy(tmp_path, corrupt)
    argv = ["compare", "--posterior", BUNDLED_NAME, "--posteriordb", str(root), "--guides", "fullrank", "--steps",
            "50", "--quiet", "--out", str(tmp_path / "out")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err

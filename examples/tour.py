"""The whole story in one command: every example on embedded data, in order, as one HTML report.

Runs kl -> linreg -> logreg -> bnn -> compare (logreg, NUTS reference) -> compare (eight schools from
posteriordb, against its reference draws) -> compare (a hard latent GP, against its shipped reference) -> vae ->
ratio -> gan -> avb -> unify (GAN against VAE), each
in its own folder under --out (--jobs steps side by side, one per core by default, the longest first;
each step starts from --seed, so its numbers do not depend on that), then writes ``index.html`` (a
section per step: what to look at, its figures, its key numbers and the command that reproduces it) and
``summary.json`` (every metric and status). A failed step is reported in the page and in the exit
status; the other steps still run.

    deepprob tour --quick --out runs/tour      # about 7 minutes on 2 CPU cores (2 steps at a time)
    deepprob tour --out runs/tour-full          # longer fits; says how long before it starts
    deepprob tour --quick --only kl,linreg      # a subset of the steps
"""

from __future__ import annotations

import json
import shlex
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from deepprob.errors import InputError
from deepprob.examples.tour_page import render_html
from deepprob.files import jsonable


@dataclass
class Step:
    """One step of the tour: the example's command line (quick and full) and what it shows."""

    name: str
    argv: list[str]
    quick: list[str]
    explain: str
    keys: list[str]
    minutes_full: float = 1.0
    seconds_quick: float = 10.0  # measured, two steps at a time on 2 cores: the longest steps start first
    extra: dict = field(default_factory=dict)
    # (this step's metrics, every step's metrics by name) -> (what the step claims, with the run's numbers;
    # whether the run shows it); see CLAIMS
    claim: Callable[[dict, dict], tuple[str, bool]] | None = None


# the test corpus's latent GP and its shipped long NUTS reference (in the repository, beside the package's modules)
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus"

STEPS = [
    Step("kl", ["kl"], [],
         "Fit one Gaussian to a two-mode mixture by each direction of the KL divergence. "
         "KL(p||q) covers both modes (moment matching); KL(q||p) seeks one mode and ignores the other.",
         ["forward", "reverse"], 0.2, 3),
    Step("linreg-fit", ["linreg", "--guide", "fullrank"], [],
         "Bayesian linear regression on a cubic basis: posterior curves over the data, and the predictive "
         "density, whose spread grows outside the range of the data.",
         ["kl_to_exact", "elbo", "log_evidence"], 0.5, 2),
    Step("linreg", ["compare", "linreg"], ["--draws", "1000"],
         "Bayesian linear regression has an exact Gaussian posterior; each guide is measured against it. "
         "Full-rank and Laplace are exact here (KL near 0); mean-field misses the correlations.",
         ["guides"], 3, 10),
    # quick: fewer report draws and, in compare-logreg, 500 of the 2,000 points: the pointwise log-likelihoods
    # (draws x points) are most of the tour's bytes (1 MB per 250,000 values, quantised; 16 MB a guide at 2,000
    # draws of 2,000 points). The far-point predictive needs few draws; k-hat is read in compare-logreg
    Step("logreg-laplace", ["logreg", "--guide", "laplace"], ["--steps", "1000", "--draws", "250"],
         "Laplace: the MAP point and the curvature there. Far from the data the Bayesian predictive "
         "stays unsure while the plug-in (MAP) probability is overconfident.",
         ["far_point", "accuracy", "log_loss"], 0.5, 4),
    Step("logreg-fullrank", ["logreg", "--guide", "fullrank"], ["--steps", "1000", "--draws", "250"],
         "The same model fitted by maximising the ELBO with a full-rank Gaussian guide; compare its "
         "far-point predictive and decision boundaries with Laplace.",
         ["far_point", "accuracy", "elbo"], 0.5, 5),
    Step("bnn", ["bnn", "--guide", "fullrank"], ["--steps", "1500"],
         "A Bayesian neural network on two half-moons: a non-linear decision surface whose uncertainty "
         "(right panel) grows away from the data.",
         ["accuracy", "log_loss", "elbo"], 2, 10),
    Step("compare-logreg", ["compare", "logreg", "--reference", "nuts"], ["--draws", "500", "--num-points", "500"],
         "Every guide against a NUTS reference: errors of means and sds in reference sd, and the PSIS "
         "k-hat diagnostic (below 0.5: the guide is trustworthy for importance sampling; above 0.7: it is not).",
         ["reference", "guides"], 4, 31),
    Step("posteriordb-eight-schools", ["compare", "--posterior", "eight_schools-eight_schools_noncentered"],
         ["--steps", "4000", "--draws", "1000"],
         "A real posterior that no one here wrote: eight schools (non-centred) from posteriordb, every guide against "
         "its gold-standard draws (10,000 from long, checked runs of Stan's NUTS, bundled with deepprob). The "
         "guides start at the Laplace approximation; none is exact here, since the posterior of tau is skewed "
         "towards 0, and k-hat says so.",
         ["reference", "guides"], 1, 14),
    Step("hard-latent-gp", ["compare", "--model", f"{CORPUS / 'latent_gp.py'}:model",
                            "--data", str(CORPUS / "references" / "latent_gp.json"),
                            "--reference-draws", str(CORPUS / "references" / "latent_gp.npz"),
                            "--guides", "meanfield,fullrank,mixture,auto"],
         ["--guides", "meanfield,fullrank,mixture", "--steps", "3000", "--draws", "1000"],
         "A hard posterior, written as a user writes it: a latent Gaussian process under Poisson counts, centred "
         "(MultivariateNormal with the kernel matrix), against a long NUTS run of the same posterior (made on its "
         "non-centred form and shipped). Few counts leave a funnel between the kernel and the latent values, and a "
         "ridge of high density where the kernel matrix is near singular: the Gaussian guides collapse onto it "
         "(the kernel's length far too long). The trust verdict, which needs no reference, says so: no guide it "
         "trusts is off.",
         ["reference", "guides"], 8, 40),
    Step("vae-onehot", ["vae", "--dataset", "onehot"], [],
         "A VAE on four one-hot vectors with a 2-D latent: the latent means separate into four clusters.",
         ["latent_accuracy", "test_elbo", "test_iw_loglik"], 0.3, 4),
    Step("vae-digits", ["vae", "--dataset", "digits", "--epochs", "30"], ["--epochs", "15"],
         "A VAE on scikit-learn's 8x8 digits: reconstructions, prior samples, a latent interpolation; the "
         "importance-weighted log-likelihood is above the ELBO, and both far above the untrained model.",
         ["test_elbo", "test_iw_loglik", "init_test_elbo", "fid", "classes_covered", "confident_fraction"], 1, 9),
    Step("ratio", ["ratio"], [],
         "A classifier between data and a uniform reference recovers the data density as u(x) D/(1-D): "
         "compare the learnt and true densities.",
         ["integral", "mae"], 1, 6),
    Step("gan-gaussian", ["gan", "--dataset", "gaussian"], [],
         "A GAN learns a correlated 2-D Gaussian as an implicit distribution: errors of its mean and covariance.",
         ["mean_error", "cov_error"], 1, 28),
    Step("gan-ring", ["gan", "--dataset", "ring"], [],
         "The standard GAN on eight modes drops some of them (mode dropping).",
         ["modes_covered", "num_modes", "high_quality_fraction"], 2, 31),
    Step("gan-ring-pack", ["gan", "--dataset", "ring", "--pack", "4", "--no-baseline"], [],
         "PacGAN: the discriminator judges 4 samples at once, which penalises a generator that lacks variety.",
         ["modes_covered", "num_modes", "high_quality_fraction"], 2, 37),
    Step("gan-grid-pack", ["gan", "--dataset", "grid", "--pack", "4", "--no-baseline"], [],
         "PacGAN on the 5x5 grid's 25 narrow modes, with the settings that follow from that many modes (one "
         "discriminator step of batch 200, a discriminator three times the generator's width, 40,000 iterations, the "
         "learning rates decaying to a tenth).",
         ["modes_covered", "num_modes", "high_quality_fraction"], 5, 276),
    Step("gan-ring-unrolled", ["gan", "--dataset", "ring", "--unrolled", "5", "--no-baseline"],
         ["--iterations", "1500"],
         "Unrolled GAN: the generator's loss looks 5 discriminator steps ahead.",
         ["modes_covered", "num_modes", "high_quality_fraction"], 3, 47),
    Step("gan-ring-wgan", ["gan", "--dataset", "ring", "--loss", "wgan-gp", "--no-baseline"], ["--iterations", "4000"],
         "WGAN-GP: a critic with a gradient penalty in place of the classifier.",
         ["modes_covered", "num_modes", "high_quality_fraction"], 3, 39),
    Step("gan-digits", ["gan", "--dataset", "digits"], [],
         "A DCGAN on 8x8 digits: a sample grid, an interpolation between two latent points, and latent arithmetic. "
         "A small CNN trained on real digits scores its samples against the VAE's: digits covered, the share read "
         "confidently, and the Frechet distance in the classifier's features (an FID for digits).",
         ["fid", "classes_covered", "confident_fraction", "classifier_accuracy"], 2, 38),
    Step("avb-onehot", ["avb", "--dataset", "onehot"], ["--epochs", "100"],
         "Adversarial variational Bayes: the encoder is a network fed with noise (no density), and a discriminator "
         "T(x, z) learns log q(z | x) - log p(z) by the density-ratio trick, standing in for it in the ELBO. On four "
         "one-hot vectors with a 2-D latent, its codes tile the plane (the AVB paper's figure) and its held-out "
         "log p(x), by numerical integration over z, comes near the optimum log(1/4) = -1.386, where the Gaussian "
         "encoder's VAE, trained beside it, stays further off.",
         ["test_loglik", "test_loglik_method", "baseline", "adversary_checks"], 3, 68),
    Step("unify", ["unify"], ["--datasets", "grid"],
         "GAN against VAE on the same mixture, same latent size and networks: the GAN (mode seeking, like KL(Q||P)) "
         "drops modes and keeps its samples sharp; the VAE (maximum likelihood, KL(P||Q)) covers every mode and puts "
         "mass between them. Both KL directions to the true density say so.",
         ["datasets"], 6, 280),
]


def _guide(m: dict, name: str) -> dict:
    return (m.get("guides") or {}).get(name) or {}


def _modes(m: dict) -> str:
    return f"{m['modes_covered']}/{m['num_modes']} modes"


def _vs_standard(label: str):
    def claim(m, steps):
        standard = steps.get("gan-ring") or {}
        base = standard.get("modes_covered")
        text = f"{label} covers more modes than the standard GAN: {_modes(m)}" + (f" against {base}" if base else "")
        return text, base is not None and m["modes_covered"] > base
    return claim


def _gan_against_vae(m, steps):
    vae, gan = steps.get("vae-digits") or {}, m
    text = (f"GAN samples sharper (confident {gan.get('confident_fraction', 0):.0%} against the VAE's "
            f"{vae.get('confident_fraction', 0):.0%}; FID {gan.get('fid', float('nan')):.1f} against "
            f"{vae.get('fid', float('nan')):.1f}), {gan.get('classes_covered', 0)}/10 digits covered")
    return text, "fid" in vae and gan["confident_fraction"] > vae["confident_fraction"]


def _honest_verdicts(m: dict) -> tuple[str, bool]:
    """The verdict agrees with the measurement: every guide it trusts (yes, or through its corrected draws) is within
    0.2 reference sds; those it does not are said."""
    rows = {name: row for name, row in (m.get("guides") or {}).items() if not name.endswith("+psis")}
    trusted = {name: row for name, row in rows.items() if row.get("trust") in ("yes", "corrected")}
    worst = {name: max(row["mean_err_sd"], row["sd_err_sd"]) for name, row in rows.items()}
    text = ("trusted: " + (", ".join(f"{n} ({worst[n]:.2f} sds off)" for n in trusted) or "none") + "; not: "
            + ", ".join(f"{n} ({worst[n]:.2f})" for n in rows if n not in trusted))
    return text, bool(rows) and all(worst[n] <= 0.2 for n in trusted)


CLAIMS: dict[str, Callable[[dict, dict], tuple[str, bool]]] = {
    "kl": lambda m, _: (f"KL(q||p) seeks one mode, KL(p||q) covers both: sd {m['reverse']['sigma']:.2f} against "
                        f"{m['forward']['sigma']:.2f}", m["reverse"]["sigma"] < 0.5 * m["forward"]["sigma"]),
    "linreg-fit": lambda m, _: (f"the full-rank guide is the exact posterior: KL {m['kl_to_exact']:.2g} nats",
                                m["kl_to_exact"] < 0.05),
    "linreg": lambda m, _: (
        f"mean-field misses the correlations: its sds are off by up to {_guide(m, 'meanfield').get('sd_err_sd', 0):.2f}"
        f" of the exact ones, full-rank's KL is {_guide(m, 'fullrank').get('kl_to_exact', float('nan')):.2g}",
        _guide(m, "meanfield").get("sd_err_sd", 0) > 0.2 and _guide(m, "fullrank").get("kl_to_exact", 1) < 0.05),
    "logreg-laplace": lambda m, _: (
        f"far from the data the Bayesian predictive stays unsure (p = {m['far_point']['bayes']:.2f}) while the "
        f"plug-in is confident (p = {m['far_point']['plugin']:.3f})",
        abs(m["far_point"]["bayes"] - 0.5) < abs(m["far_point"]["plugin"] - 0.5)),
    "logreg-fullrank": lambda m, _: (
        f"the ELBO guide's far-point predictive is unsure too (p = {m['far_point']['bayes']:.2f}, plug-in "
        f"{m['far_point']['plugin']:.3f})", abs(m["far_point"]["bayes"] - 0.5) < abs(m["far_point"]["plugin"] - 0.5)),
    "bnn": lambda m, _: (f"the network separates the moons: held-out accuracy {m['accuracy']:.3f}",
                         m["accuracy"] > 0.9),
    "compare-logreg": lambda m, _: (
        f"full-rank matches NUTS: means within {_guide(m, 'fullrank').get('mean_err_sd', float('nan')):.2f} reference "
        f"sds, k-hat {_guide(m, 'fullrank').get('khat', float('nan')):.2f}",
        _guide(m, "fullrank").get("mean_err_sd", 9) < 0.3 and _guide(m, "fullrank").get("khat", 9) < 0.7),
    "posteriordb-eight-schools": lambda m, _: (
        "the skewed posterior of tau shows in k-hat: mean-field's is "
        f"{_guide(m, 'meanfield').get('khat', float('nan')):.2f}",
        _guide(m, "meanfield").get("khat", 0) > 0.5),
    "hard-latent-gp": lambda m, _: _honest_verdicts(m),
    "vae-onehot": lambda m, _: (f"the latent means form four clusters: nearest-centroid accuracy "
                                f"{m['latent_accuracy']:.2f}", m["latent_accuracy"] > 0.95),
    "vae-digits": lambda m, _: (
        f"the IW log-likelihood ({m['test_iw_loglik']:.1f}) is above the ELBO ({m['test_elbo']:.1f}), both above the "
        f"untrained model ({m['init_test_elbo']:.1f})", m["test_iw_loglik"] >= m["test_elbo"] > m["init_test_elbo"]),
    "ratio": lambda m, _: (f"the density from the classifier integrates to {m['integral']:.3f} (1: exact)",
                           abs(m["integral"] - 1) < 0.1),
    "gan-gaussian": lambda m, _: (f"the GAN's samples have the data's moments: mean error {m['mean_error']:.3f}, "
                                  f"covariance error {m['cov_error']:.3f}", max(m["mean_error"], m["cov_error"]) < 0.3),
    "gan-ring": lambda m, _: (f"the standard GAN drops modes: {_modes(m)} covered",
                              m["modes_covered"] < m["num_modes"]),
    "gan-ring-pack": _vs_standard("PacGAN"),
    "gan-grid-pack": lambda m, _: (
        f"PacGAN covers the grid: {_modes(m)}, {m['high_quality_fraction']:.0%} of its samples high quality",
        m["modes_covered"] >= m["num_modes"] - 1 and m["high_quality_fraction"] >= 0.85),
    "gan-ring-unrolled": _vs_standard("the unrolled GAN"),
    "gan-ring-wgan": _vs_standard("WGAN-GP"),
    "gan-digits": _gan_against_vae,
    "avb-onehot": lambda m, _: (
        f"AVB's held-out log p(x) ({m['test_loglik']:.3f}) is nearer log(1/4) = -1.386 than the Gaussian "
        f"encoder's ({(m.get('baseline') or {}).get('test_loglik', float('nan')):.3f})",
        abs(m["test_loglik"] + 1.386) < abs((m.get("baseline") or {}).get("test_loglik", -99) + 1.386)),
    "unify": lambda m, _: (
        "the GAN seeks modes, the VAE covers them: " + "; ".join(
            f"{name}: GAN {_modes(d['gan'])}, VAE {_modes(d['vae'])}" for name, d in m["datasets"].items()),
        all(d["vae"]["modes_covered"] > d["gan"]["modes_covered"] for d in m["datasets"].values())),
}


def judge(name: str, metrics: dict, steps: dict) -> dict | None:
    """{"text", "holds"} of a step's claim, or None where the step has none or its numbers are missing."""
    claim = CLAIMS.get(name)
    if claim is None or not metrics:
        return None
    try:
        text, holds = claim(metrics, steps)
    except (KeyError, TypeError, ValueError) as err:  # a metric the claim needs is missing: say so, not crash
        return {"text": f"not measured ({type(err).__name__}: {err})", "holds": None}
    return {"text": text, "holds": bool(holds)}


def select_steps(only: str | None) -> list[Step]:
    if only is None:
        return list(STEPS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {s.name for s in STEPS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"--only {only!r}: unknown step(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
    return [s for s in STEPS if s.name in names]


def step_argv(step: Step, args) -> list[str]:
    """The step's full command line (without the program name)."""
    argv = list(step.argv) + (step.quick if args.quick else [])
    return argv + ["--seed", str(args.seed), "--device", str(args.device), "--out", str(args.out / step.name)]


def run_step(argv: list[str], quiet: bool = False) -> dict:
    """Parse ``argv`` as the CLI would and run it in this process; returns its metrics (``quiet``: without
    its progress bars)."""
    from deepprob.examples.commands import parse, run_example

    return run_example(parse(argv + ["--json"] + (["--quiet"] if quiet else [])))  # --json: no text report


def run_record(step: Step, args, quiet: bool) -> dict:
    """Run one step; its record for the report (a failure is recorded, not raised)."""
    argv = step_argv(step, args)
    start = time.perf_counter()
    record = {"name": step.name, "command": "deepprob " + shlex.join(argv), "explain": step.explain,
              "keys": step.keys}
    try:
        record.update(status="ok", metrics=jsonable(run_step(argv, quiet)))
    except BaseException as err:  # a failed step is reported; the others still run
        if isinstance(err, KeyboardInterrupt):
            raise
        record.update(status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=5), metrics={})
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["figures"] = sorted(str(p.relative_to(args.out)) for p in (args.out / step.name).glob("*.png"))
    return record


def main(args):
    from deepprob.pool import map_forked, resolve_jobs

    steps = select_steps(args.only)
    if args.list:
        for s in steps:
            print(f"{s.name:<18} deepprob {' '.join(s.argv)}")
        return {"steps": [s.name for s in steps]}
    jobs = resolve_jobs(args.jobs, len(steps), args.device)
    if not args.quick and not (args.json or args.quiet):
        minutes = sum(s.minutes_full for s in steps) / jobs
        print(f"deepprob tour (full): {len(steps)} steps, about {minutes:.0f} minutes on 2 CPU cores; use --quick "
              "for a version of under 10 minutes", flush=True)
    # the steps are independent (each from the seed, in its own folder): run side by side, longest first (so
    # that no long step starts last), each without its own progress bars when they would interleave
    expected = [s.seconds_quick if args.quick else 60 * s.minutes_full for s in steps]
    order = sorted(range(len(steps)), key=lambda i: -expected[i]) if jobs > 1 else list(range(len(steps)))
    bar = tqdm(total=len(steps), desc=f"tour ({jobs} at a time)" if jobs > 1 else "tour", disable=args.quiet,
               dynamic_ncols=True, position=0)

    def finished(_: int, record: dict) -> None:
        bar.set_postfix_str(f"{record['name']} {record['status']} in {record['seconds']:.0f} s")
        bar.update()

    quiet = args.quiet or jobs > 1  # side by side, the steps' own bars would interleave

    def run(i):
        if jobs == 1:  # one at a time: the bar names the step running, whose own bars show below it
            bar.set_description(f"tour {bar.n + 1}/{len(steps)}: {steps[i].name}")
        return run_record(steps[i], args, quiet)

    records = map_forked(run, order, jobs, on_result=finished)
    bar.close()
    results = [None] * len(steps)
    for i, record in zip(order, records):
        results[i] = record
    by_name = {r["name"]: r["metrics"] for r in results}
    for record in results:
        record["claim"] = judge(record["name"], record["metrics"], by_name)
    summary = {"quick": args.quick, "seed": args.seed, "device": str(args.device), "jobs": jobs, "steps": results}
    (args.out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    (args.out / "index.html").write_text(render_html(summary))
    failed = [r["name"] for r in results if r["status"] != "ok"]
    if not (args.json or args.quiet):
        print(f"tour: {len(results) - len(failed)}/{len(results)} steps ok; report {args.out / 'index.html'}")
    if failed:
        raise TourFailed(f"{len(failed)} step(s) failed: {', '.join(failed)} (see {args.out / 'index.html'})")
    return {"steps": {r["name"]: r["status"] for r in results}, "report": str(args.out / "index.html")}


class TourFailed(InputError):
    """Some steps failed; the report says which and why (the CLI exits non-zero)."""

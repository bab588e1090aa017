"""The whole story in one command: every example on embedded data, in order, as one HTML report.

Runs kl -> linreg -> logreg -> bnn -> compare (logreg, NUTS reference) -> compare (eight schools from
posteriordb, against its reference draws) -> vae -> ratio -> gan -> avb -> unify (GAN against VAE), each
in its own folder under --out, then writes ``index.html`` (a section per step: what to look at, its
figures, its key numbers and the command that reproduces it) and ``summary.json`` (every metric and
status). A failed step is reported in the page and in the exit status; the other steps still run.

    deepprob tour --quick --out runs/tour      # under 10 minutes on 2 CPU cores (about 6 measured)
    deepprob tour --out runs/tour-full          # longer fits; says how long before it starts
    deepprob tour --quick --only kl,linreg      # a subset of the steps
"""

from __future__ import annotations

import html
import json
import shlex
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from deepprob.errors import InputError
from deepprob.runtime import jsonable


@dataclass
class Step:
    """One step of the tour: the example's command line (quick and full) and what it shows."""

    name: str
    argv: list[str]
    quick: list[str]
    explain: str
    keys: list[str]
    minutes_full: float = 1.0
    extra: dict = field(default_factory=dict)


STEPS = [
    Step("kl", ["kl"], [],
         "Fit one Gaussian to a two-mode mixture by each direction of the KL divergence. "
         "KL(p||q) covers both modes (moment matching); KL(q||p) seeks one mode and ignores the other.",
         ["forward", "reverse"], 0.2),
    Step("linreg-fit", ["linreg", "--guide", "fullrank"], [],
         "Bayesian linear regression on a cubic basis: posterior curves over the data, and the predictive "
         "density, whose spread grows outside the range of the data.",
         ["kl_to_exact", "elbo", "log_evidence"], 0.5),
    Step("linreg", ["compare", "linreg"], [],
         "Bayesian linear regression has an exact Gaussian posterior; each guide is measured against it. "
         "Full-rank and Laplace are exact here (KL near 0); mean-field misses the correlations.",
         ["guides"], 3),
    Step("logreg-laplace", ["logreg", "--guide", "laplace"], ["--steps", "1000"],
         "Laplace: the MAP point and the curvature there. Far from the data the Bayesian predictive "
         "stays unsure while the plug-in (MAP) probability is overconfident.",
         ["far_point", "accuracy", "log_loss"], 0.5),
    Step("logreg-fullrank", ["logreg", "--guide", "fullrank"], ["--steps", "1000"],
         "The same model fitted by maximising the ELBO with a full-rank Gaussian guide; compare its "
         "far-point predictive and decision boundaries with Laplace.",
         ["far_point", "accuracy", "elbo"], 0.5),
    Step("bnn", ["bnn", "--guide", "fullrank"], ["--steps", "1500"],
         "A Bayesian neural network on two half-moons: a non-linear decision surface whose uncertainty "
         "(right panel) grows away from the data.",
         ["accuracy", "log_loss", "elbo"], 2),
    Step("compare-logreg", ["compare", "logreg", "--reference", "nuts"], [],
         "Every guide against a NUTS reference: errors of means and sds in reference sd, and the PSIS "
         "k-hat diagnostic (below 0.5: the guide is trustworthy for importance sampling; above 0.7: it is not).",
         ["reference", "guides"], 4),
    Step("posteriordb-eight-schools", ["compare", "--posterior", "eight_schools-eight_schools_noncentered"],
         ["--steps", "4000", "--draws", "1000"],
         "A real posterior that no one here wrote: eight schools (non-centred) from posteriordb, every guide against "
         "its gold-standard draws (10,000 from long, checked runs of Stan's NUTS, bundled with deepprob). The "
         "guides start at the Laplace approximation; none is exact here, since the posterior of tau is skewed "
         "towards 0, and k-hat says so.",
         ["reference", "guides"], 1),
    Step("vae-onehot", ["vae", "--dataset", "onehot"], [],
         "A VAE on four one-hot vectors with a 2-D latent: the latent means separate into four clusters.",
         ["latent_accuracy", "test_elbo", "test_iw_loglik"], 0.3),
    Step("vae-digits", ["vae", "--dataset", "digits", "--epochs", "30"], ["--epochs", "15"],
         "A VAE on scikit-learn's 8x8 digits: reconstructions, prior samples, a latent interpolation; the "
         "importance-weighted log-likelihood is above the ELBO, and both far above the untrained model.",
         ["test_elbo", "test_iw_loglik", "init_test_elbo"], 1),
    Step("ratio", ["ratio"], [],
         "A classifier between data and a uniform reference recovers the data density as u(x) D/(1-D): "
         "compare the learnt and true densities.",
         ["integral", "mae"], 1),
    Step("gan-gaussian", ["gan", "--dataset", "gaussian"], [],
         "A GAN learns a correlated 2-D Gaussian as an implicit distribution: errors of its mean and covariance.",
         ["mean_error", "cov_error"], 1),
    Step("gan-ring", ["gan", "--dataset", "ring"], [],
         "The standard GAN on eight modes drops some of them (mode dropping).",
         ["modes_covered", "num_modes", "high_quality_fraction"], 2),
    Step("gan-ring-pack", ["gan", "--dataset", "ring", "--pack", "4", "--no-baseline"], [],
         "PacGAN: the discriminator judges 4 samples at once, which penalises a generator that lacks variety.",
         ["modes_covered", "num_modes", "high_quality_fraction"], 2),
    Step("gan-ring-unrolled", ["gan", "--dataset", "ring", "--unrolled", "5", "--no-baseline"], [],
         "Unrolled GAN: the generator's loss looks 5 discriminator steps ahead.",
         ["modes_covered", "num_modes", "high_quality_fraction"], 3),
    Step("gan-ring-wgan", ["gan", "--dataset", "ring", "--loss", "wgan-gp", "--no-baseline"], [],
         "WGAN-GP: a critic with a gradient penalty in place of the classifier.",
         ["modes_covered", "num_modes", "high_quality_fraction"], 3),
    Step("gan-digits", ["gan", "--dataset", "digits"], ["--epochs", "40"],
         "A DCGAN on 8x8 digits: a sample grid, an interpolation between two latent points, and latent arithmetic.",
         [], 2),
    Step("avb-onehot", ["avb", "--dataset", "onehot"], ["--epochs", "100"],
         "Adversarial variational Bayes: the encoder is a network fed with noise (no density), and a discriminator "
         "T(x, z) learns log q(z | x) - log p(z) by the density-ratio trick, standing in for it in the ELBO. On four "
         "one-hot vectors with a 2-D latent, its codes tile the plane (the AVB paper's figure) and its held-out "
         "log p(x), by numerical integration over z, comes near the optimum log(1/4) = -1.386, where the Gaussian "
         "encoder's VAE, trained beside it, stays further off.",
         ["test_loglik", "test_loglik_method", "baseline", "adversary_checks"], 3),
    Step("unify", ["unify"], ["--datasets", "grid"],
         "GAN against VAE on the same mixture, same latent size and networks: the GAN (mode seeking, like KL(Q||P)) "
         "drops modes and keeps its samples sharp; the VAE (maximum likelihood, KL(P||Q)) covers every mode and puts "
         "mass between them. Both KL directions to the true density say so.",
         ["datasets"], 5),
]


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


def run_step(argv: list[str]) -> dict:
    """Parse ``argv`` as the CLI would and run it in this process; returns its metrics."""
    from deepprob.examples.commands import parse, run_example

    return run_example(parse(argv + ["--json"]))  # --json: no text report, bars stay


def main(args):
    steps = select_steps(args.only)
    if args.list:
        for s in steps:
            print(f"{s.name:<18} deepprob {' '.join(s.argv)}")
        return {"steps": [s.name for s in steps]}
    if not args.quick and not (args.json or args.quiet):
        print(f"deepprob tour (full): {len(steps)} steps, about {sum(s.minutes_full for s in steps):.0f} minutes on "
              "2 CPU cores; use --quick for a ~10-minute version", flush=True)
    results = []
    bar = tqdm(steps, desc="tour", disable=args.quiet, dynamic_ncols=True, position=0)
    for i, step in enumerate(bar):
        bar.set_description(f"tour {i + 1}/{len(steps)}: {step.name}")
        argv = step_argv(step, args)
        start = time.perf_counter()
        record = {"name": step.name, "command": "deepprob " + shlex.join(argv), "explain": step.explain,
                  "keys": step.keys}
        try:
            metrics = run_step(argv)
            record.update(status="ok", metrics=jsonable(metrics))
        except BaseException as err:  # a failed step is reported; the others still run
            if isinstance(err, KeyboardInterrupt):
                raise
            record.update(status="failed", error=f"{type(err).__name__}: {err}",
                          traceback=traceback.format_exc(limit=5), metrics={})
        record["seconds"] = round(time.perf_counter() - start, 2)
        record["figures"] = sorted(str(p.relative_to(args.out)) for p in (args.out / step.name).glob("*.png"))
        results.append(record)
    bar.close()
    summary = {"quick": args.quick, "seed": args.seed, "device": str(args.device), "steps": results}
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


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format(v)}" for k, v in value.items() if not isinstance(v, (list, dict)))
    return html.escape(str(value))


def _nested_rows(value: dict, prefix: str = ""):
    """(name, numbers) for each innermost dict of numbers: guides, or data set / model."""
    for name, inner in value.items():
        if isinstance(inner, dict) and any(isinstance(v, dict) for v in inner.values()):
            yield from _nested_rows(inner, f"{prefix}{name} / ")
        else:
            yield f"{prefix}{name}", inner


def _metric_rows(record: dict) -> str:
    metrics = record["metrics"]
    rows = []
    for key in record["keys"]:
        if key not in metrics:
            continue
        value = metrics[key]
        if key in ("guides", "datasets", "adversary_checks") and isinstance(value, dict):
            for name, numbers in _nested_rows(value):
                rows.append(f"<tr><th>{html.escape(name)}</th><td>{_format(numbers)}</td></tr>")
        else:
            rows.append(f"<tr><th>{html.escape(key)}</th><td>{_format(value)}</td></tr>")
    rows.append(f"<tr><th>seconds</th><td>{record['seconds']:.1f}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_html(summary: dict) -> str:
    """One page: a section per step with its explanation, key numbers, command and figures."""
    sections = []
    for i, r in enumerate(summary["steps"], start=1):
        status = "" if r["status"] == "ok" else (f"<p class='failed'>FAILED: {html.escape(r['error'])}</p>"
                                                  f"<pre>{html.escape(r.get('traceback', ''))}</pre>")
        figures = "".join(f"<figure><img src='{html.escape(f)}' alt='{html.escape(f)}'>"
                          f"<figcaption>{html.escape(Path(f).name)}</figcaption></figure>" for f in r["figures"])
        sections.append(
            f"<section id='{html.escape(r['name'])}'><h2>{i}. {html.escape(r['name'])}</h2>"
            f"<p>{html.escape(r['explain'])}</p>{status}{_metric_rows(r)}"
            f"<p>Reproduce: <code>{html.escape(r['command'])}</code></p>{figures}</section>")
    ok = sum(r["status"] == "ok" for r in summary["steps"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deepprob tour</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; line-height: 1.4; }}
section {{ border-top: 1px solid #ccc; padding: 1em 0; }}
img {{ max-width: 100%; }} figure {{ margin: 0.5em 0; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} th, td {{ border: 1px solid #ddd; padding: 2px 8px;
text-align: left; font-size: 90%; }}
.failed {{ color: #b00; font-weight: bold; }} code {{ background: #f4f4f4; padding: 1px 4px; }}
</style></head><body>
<h1>deepprob: from conjugate regression to GANs</h1>
<p>{ok} of {len(summary['steps'])} steps ok; seed {summary['seed']}, device {html.escape(summary['device'])},
{'quick' if summary['quick'] else 'full'} settings. Metrics of every step are in <code>summary.json</code>.</p>
{''.join(sections)}
</body></html>
"""


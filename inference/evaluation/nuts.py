"""NUTS as a reference posterior: started well, adapted well, run until its draws pass the checks.

A reference that calls itself unconverged leaves a user unable to tell whether to believe the comparison.
:func:`run_nuts` runs multinomial NUTS with Stan's windowed adaptation (:mod:`.nuts_kernel`) so that
its draws pass posteriordb's standard by default: split R-hat < 1.01, bulk and tail ESS >= 400 for every
latent scalar, no divergent transition after warmup.

- **The start.** The mode by L-BFGS and the curvature there (the guides' Laplace start,
  :mod:`deepprob.guides.start`). NUTS runs in whitened coordinates v = L^{-1} (u - mode), with L L^T the
  Laplace covariance, where the posterior is close to a standard Gaussian: a correlation of -0.9999 or
  scales a thousand apart no longer force tiny steps while the mass matrix is learnt. Each chain starts at a
  draw of that Gaussian (v ~ N(0, I)): dispersed starts in the posterior's bulk.
- **The mass matrix.** Dense where the dimension allows (``dense_up_to``), diagonal above, adapted in Stan's
  windows over ``warmup`` steps.
- **Until it passes.** After ``samples`` draws per chain the checks run on the latent sites' draws; while
  they fail and time is left (``max_seconds``), every chain draws more (as many as the ESS says are needed).
  A divergent transition is not cured by more draws: the chains warm up again, from where they are, with a
  higher target acceptance (smaller steps). What fails in the end is said, with what to try.
- **The log density** is the one every guide is fitted to (:meth:`~deepprob.logdensity.ModelStructure.\
log_joint_unconstrained`: models that do not broadcast too), with its gradient compiled as the compiled engine
  compiles a step (:func:`~deepprob.compiler.compiling.compile_step`: one C function, or Inductor's
  kernels where C lacks an operation), else eager; the compiled value and gradient are checked against eager
  torch's at the start.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pyro
import torch

from deepprob.errors import InputError
from deepprob.inference.evaluation.nuts_kernel import NUTS
from deepprob.logdensity import ModelStructure, init_uniform
from deepprob.progress import bar as progress_bar
from deepprob.progress import report_once
from deepprob.seeds import rng_untouched

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

RHAT_MAX = 1.01  # Vehtari et al. (2021), posteriordb's reference standard: R-hat < 1.01 for every quantity ...
ESS_MIN = 400    # ... bulk and tail ESS at least 400, and no divergent transition
RETRY_TARGETS = (0.95, 0.99)  # the target acceptance rates of warmups after a divergence


@dataclass(frozen=True)
class NUTSBudget:
    """How NUTS runs: ``chains`` chains (one after another) of ``warmup`` adaptation steps and at least ``samples``
    kept draws, at most 2^``max_tree_depth`` gradient steps a draw, step sizes adapted to an acceptance of
    ``target_accept``. With ``until_converged`` the chains draw more until the checks pass (R-hat < 1.01, bulk
    and tail ESS >= ``min_ess``, no divergence) or ``max_seconds`` have passed. ``start``: ``"laplace"`` (the
    mode and curvature, whitened coordinates) or ``"uniform"`` (Pyro's: uniform in (-2, 2) of the unconstrained
    space, no whitening). The mass matrix is dense up to ``dense_up_to`` latent dimensions."""

    chains: int = 4
    warmup: int = 1000
    samples: int = 1000
    max_tree_depth: int = 10
    target_accept: float = 0.9
    until_converged: bool = True
    min_ess: float = ESS_MIN
    max_seconds: float = 900.0
    start: str = "laplace"
    dense_up_to: int = 200

    def __post_init__(self):
        if self.start not in ("laplace", "uniform"):
            raise InputError(f"NUTS start {self.start!r}: expected 'laplace' or 'uniform'")
        if not 0.0 < self.target_accept < 1.0:
            raise InputError(f"--target-accept {self.target_accept}: expected a number in (0, 1)")
        if self.max_seconds <= 0:
            raise InputError(f"--nuts-seconds {self.max_seconds}: expected a positive number of seconds")


@dataclass
class NutsRun:
    """Draws of a multi-chain NUTS run.

    Attributes:
        latents: each latent site, (chains * draws, *shape), chain-major.
        chains: number of chains.  divergences: divergent transitions after warmup, per chain.
        seconds: wall time of all chains.
        gradient_evaluations: of the log density, warmup included, over all chains.
        checks: the checks of the latent sites' draws (``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``).
        converged: whether they pass (and there was no divergence); ``problems``: what failed, and what to try.
        draws: kept draws per chain; ``rounds``: how many times the chains drew; ``compiled_by``: "c" or None.
        target_accept: of the warmup whose draws these are (higher than asked after divergences).
    """

    latents: dict[str, torch.Tensor]
    chains: int
    divergences: list[int]
    seconds: float
    gradient_evaluations: int = 0
    checks: dict = field(default_factory=dict)
    converged: bool = False
    problems: str = ""
    draws: int = 0
    rounds: int = 1
    compiled_by: str | None = None
    target_accept: float | None = None


class Potential:
    """-log p(x, T(mode + L v)) - log|J| and its gradient at whitened coordinates v, a float64 NumPy vector (D,),
    as :class:`~deepprob.inference.evaluation.nuts_kernel.NUTS` takes it, counting its evaluations; compiled to C
    where the compiled engine takes it, else torch's autograd in the log density's own dtype."""

    def __init__(self, log_joint: Callable, mode: torch.Tensor, scale_tril: torch.Tensor, compile: bool = True):
        self.log_joint, self.mode, self.scale_tril = log_joint, mode, scale_tril
        self.evaluations, self.compiled, self.compiled_by = 0, None, None
        self._eager = torch.func.grad_and_value(self.energy)
        if compile:
            self._compile()

    def energy(self, v: torch.Tensor) -> torch.Tensor:
        u = self.mode + self.scale_tril @ v
        return -self.log_joint(u.unsqueeze(0))[0]

    def _compile(self) -> None:
        if self.mode.device.type != "cpu":
            return
        try:
            from deepprob.compiler import agrees_to_rounding, compile_step

            def energy(v):  # a plain function of v: make_fx traces its signature
                return self.energy(v)

            step = torch.func.grad_and_value(energy)
            example = torch.zeros_like(self.mode)
            with rng_untouched(self.mode.device), warnings.catch_warnings(), pyro.validation_enabled(False):
                warnings.simplefilter("ignore")
                # C, or Inductor where C lacks an operation (seconds to compile, repaid by a reference's run)
                compiled = compile_step(step, [example], backend="auto")
                grad, value = compiled(example)
                want_grad, want = step(example)
            if agrees_to_rounding(value, want) and agrees_to_rounding(grad, want_grad):
                self.compiled, self.compiled_by = compiled, compiled.by
            else:
                report_once(f"NUTS: the compiled log density differs from torch's at the start ({float(value):.6g} "
                            f"against {float(want):.6g}); it is evaluated eagerly, several times slower")
        except Exception as err:  # noqa: BLE001 - a model no compiler takes: evaluated eagerly (the same numbers)
            report_once(f"NUTS: the log density is not compiled ({type(err).__name__}: {str(err)[:160]}); it is "
                        "evaluated eagerly, several times slower")
            self.compiled = None

    def __call__(self, v: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        x = torch.from_numpy(v).to(device=self.mode.device, dtype=self.mode.dtype)
        try:
            if self.compiled is not None:
                grad, value = self.compiled(x)
            else:
                with pyro.validation_enabled(False):
                    grad, value = self._eager(x)
        except torch.linalg.LinAlgError:  # a covariance no longer positive definite out there: a divergence
            return math.inf, np.zeros_like(v)
        return float(value), grad.detach().to(device="cpu", dtype=torch.float64).numpy()


def _frame(structure: ModelStructure, log_joint: Callable, budget: NUTSBudget, model, args, kwargs):
    """(mode, L, evaluations): where the whitened coordinates are centred and how they are scaled."""
    from deepprob.guides.start import laplace_start

    start = structure.initial_point(model, *args, **kwargs)
    # the chains move in the log density's precision: float64 data make a float64 density of float32 latent
    # sites (a prior of Python floats under torch's default float32), and Pyro's NUTS takes its gradient's dtype
    with torch.no_grad(), pyro.validation_enabled(False):
        start = start.to(torch.promote_types(start.dtype, log_joint(start.unsqueeze(0)).dtype))
    D = len(start)
    if budget.start == "laplace":
        with pyro.validation_enabled(False):
            found = laplace_start(log_joint, start)
        if found is not None:
            try:
                return found.loc, torch.linalg.cholesky(found.covariance), found.evaluations
            except RuntimeError:  # not positive definite to working precision: the mode, unscaled
                return found.loc, torch.eye(D, dtype=start.dtype, device=start.device), found.evaluations
    return torch.zeros_like(start), torch.eye(D, dtype=start.dtype, device=start.device), 0


def run_nuts(model: Callable, *args, budget: NUTSBudget = NUTSBudget(), seed: int = 0, progress: bool = True,
             desc: str = "NUTS", compile: bool = True, **kwargs) -> NutsRun:
    """NUTS on ``model(*args, **kwargs)`` as the module's doc says: ``budget.chains`` chains, one after another,
    of ``budget.warmup`` adaptation steps and ``budget.samples`` draws, then more while the checks fail
    (``budget.until_converged``) and time is left. Where a chain diverges, every chain warms up again from where
    it is, with a higher target acceptance (0.95, then 0.99: smaller steps), time permitting. Chain c draws its
    random numbers from ``seed + c``. Plates that subsample run over the full data (NUTS needs the exact log
    density).

    Raises:
        ModelError: a model that cannot be used (:meth:`~deepprob.logdensity.ModelStructure.check`).
    """
    began = time.perf_counter()
    structure = ModelStructure.of(model, *args, **kwargs).check()
    log_joint = structure.log_joint_unconstrained(model, *args, **kwargs)
    with rng_untouched(_device(args, kwargs)):
        pyro.set_rng_seed(seed)  # the start's prior medians are medians of draws: the same from the same seed
        mode, scale_tril, evaluations = _frame(structure, log_joint, budget, model, args, kwargs)
    # a model run draw by draw in a Python loop may branch on its latent values: a trace would fix the branches
    potential = Potential(log_joint, mode, scale_tril, compile=compile and structure.batching != "loop")
    starts = []
    for c in range(budget.chains):
        pyro.set_rng_seed(seed + c)
        if budget.start == "laplace":  # a draw of the Laplace approximation: N(0, I) in whitened coordinates
            starts.append(torch.randn(len(mode), dtype=mode.dtype, device=mode.device))
        else:  # Pyro's start: uniform in (-2, 2) of the unconstrained space
            starts.append(structure.initial_point(model, *args, init_fn=init_uniform, **kwargs).to(mode.dtype))
    targets = [budget.target_accept] + ([t for t in RETRY_TARGETS if t > budget.target_accept]
                                        if budget.until_converged else [])
    for attempt, target in enumerate(targets):
        attempt_began = time.perf_counter()
        chains = [_Chain(potential, start, seed + c + 1000 * attempt, budget, target) for c, start in enumerate(starts)]
        run = _sample(chains, structure, mode, scale_tril, budget, began, progress, desc)
        retry = (sum(run["divergences"]) and attempt + 1 < len(targets)
                 # a warmup at smaller steps takes longer: half as long again as this attempt, say
                 and time.perf_counter() - began + 1.5 * (time.perf_counter() - attempt_began) < budget.max_seconds)
        if not retry:
            break
        starts = [chain.position for chain in chains]  # in the posterior's bulk by now
    evaluations += potential.evaluations
    problems = run["problems"]
    advice = advice_for(problems, replace(budget, target_accept=target)) if problems else ""
    return NutsRun(run["latents"], len(chains), run["divergences"], time.perf_counter() - began, evaluations,
                   run["checks"], not problems, problems + advice, len(chains[0].draws), run["rounds"],
                   potential.compiled_by, target)


def _sample(chains: list[_Chain], structure, mode, scale_tril, budget: NUTSBudget, began: float, progress: bool,
            desc: str) -> dict:
    """Warm the chains up, then draw until the checks pass (or time, or a divergence, ends it)."""
    n = len(chains)
    for c, chain in enumerate(chains):
        chain.warm_up(progress_bar(f"{desc}: chain {c + 1}/{n} warmup (target accept {chain.target:g})",
                                   budget.warmup, "draw", enabled=progress))
    draws, rounds = budget.samples, 0
    while True:
        rounds += 1
        for c, chain in enumerate(chains):
            chain.draw(draws, progress_bar(f"{desc}: chain {c + 1}/{n} draws" + (f" (round {rounds})" if rounds > 1
                                                                                 else ""), draws, "draw",
                                           enabled=progress))
        latents = _latents(structure, mode, scale_tril, chains)
        checks = convergence_of(latents, n)
        divergences = [chain.kernel.divergences for chain in chains]
        problems = failed_checks(checks, sum(divergences), budget.min_ess)
        elapsed = time.perf_counter() - began
        if not problems or not budget.until_converged or sum(divergences) or not math.isfinite(checks["rhat_max"]):
            break
        per_chain = len(chains[0].draws)
        # the ESS grows about linearly with the draws: as many more as it says are missing, at least a quarter
        ess = max(1.0, min(checks["ess_bulk_min"], checks["ess_tail_min"]))
        wanted = per_chain * max(0.25, budget.min_ess / ess - 1.0)
        seconds_per_draw = elapsed / max(1, per_chain + budget.warmup)
        if elapsed + wanted * seconds_per_draw > budget.max_seconds:
            problems += f"; stopped at the time budget ({budget.max_seconds:g} s)"
            break
        draws = int(math.ceil(wanted))
    return {"latents": latents, "checks": checks, "divergences": divergences, "problems": problems, "rounds": rounds}


class _Chain:
    """One chain: its NUTS kernel on ``potential`` (:mod:`.nuts_kernel`), its draws of v, its random numbers (its
    own, kept between rounds: a chain's draws do not depend on the others')."""

    def __init__(self, potential: Potential, start: torch.Tensor, seed: int, budget: NUTSBudget, target: float):
        options = dict(seed=seed, warmup=budget.warmup, target_accept=target, max_tree_depth=budget.max_tree_depth,
                       dense=len(start) <= budget.dense_up_to)
        try:
            self.kernel = NUTS(potential, start.detach().cpu().double().numpy(), **options)
        except ValueError:  # a draw of the start's Gaussian where the density is 0: the frame's centre instead
            self.kernel = NUTS(potential, np.zeros(len(start)), **options)
        self.target, self.draws = target, []
        self.dtype, self.device = start.dtype, start.device

    @property
    def position(self) -> torch.Tensor:
        return torch.from_numpy(self.kernel.point.q).to(self.dtype).to(self.device)

    def warm_up(self, bar) -> None:
        self.kernel.warm_up(lambda: bar.update(1))
        bar.close(f"step size {self.kernel.step_size:.3g}")

    def draw(self, n: int, bar) -> None:
        draws = self.kernel.draw(n, lambda: bar.update(1))
        self.draws.extend(torch.from_numpy(draws).to(self.dtype).to(self.device))
        bar.close(f"{self.kernel.divergences} divergences")


def _latents(structure: ModelStructure, mode, scale_tril, chains: list[_Chain]) -> dict[str, torch.Tensor]:
    """The chains' draws (chain-major) as the latent sites' constrained values, (chains * draws, *shape) each."""
    n = min(len(chain.draws) for chain in chains)
    v = torch.cat([torch.stack(chain.draws[:n]) for chain in chains])
    u = mode + v @ scale_tril.T
    return {site.name: transform(value).reshape((len(u),) + site.shape)
            for site, transform, value in structure.unpack(u)}


def convergence_of(sites: dict[str, torch.Tensor], chains: int) -> dict[str, float]:
    """The worst split R-hat and the smallest bulk and tail ESS over every scalar of ``sites`` (chain-major draws,
    (chains * draws, *shape) each)."""
    posterior = {name: value.reshape((chains, -1) + value.shape[1:]).detach().cpu().double().numpy()
                 for name, value in sites.items()}
    return convergence(az.from_dict(posterior=posterior))


def convergence(idata, var_names: list[str] | None = None) -> dict[str, float]:
    """The worst split R-hat and the smallest bulk and tail ESS over every scalar of ``var_names``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(idata, var_names=var_names)
        ess_bulk = az.ess(idata, var_names=var_names, method="bulk")
        ess_tail = az.ess(idata, var_names=var_names, method="tail")

    def worst(dataset, reduce) -> float:
        values = np.concatenate([np.ravel(dataset[name].values) for name in dataset.data_vars])
        return float(reduce(values))

    return {"rhat_max": worst(rhat, np.max), "ess_bulk_min": worst(ess_bulk, np.min),
            "ess_tail_min": worst(ess_tail, np.min)}


def failed_checks(checks: dict, divergences: int = 0, min_ess: float = ESS_MIN) -> str:
    """What keeps the draws from being a reference ("" when nothing does)."""
    problems = []
    if np.isnan(checks["rhat_max"]):
        problems.append("no R-hat (it needs at least 2 chains)")
    elif not checks["rhat_max"] < RHAT_MAX:
        problems.append(f"R-hat {checks['rhat_max']:.3f} >= {RHAT_MAX}")
    ess = min(checks["ess_bulk_min"], checks["ess_tail_min"])
    if not ess >= min_ess:
        problems.append(f"ESS {ess:.0f} < {min_ess:g}")
    if divergences:
        problems.append(f"{divergences} divergent transition(s)")
    return "; ".join(problems)


def advice_for(problems: str, budget: NUTSBudget) -> str:
    """What to try, for the problems found."""
    tips = []
    if "divergent" in problems:
        tips.append(f"raise --target-accept (now {budget.target_accept:g}) towards 0.99, or reparameterise the "
                    "model (a non-centred hierarchy: theta = mu + tau * z)")
    if "R-hat" in problems or "ESS" in problems:
        tips.append(f"raise --nuts-seconds (now {budget.max_seconds:g}) or --warmup (now {budget.warmup})"
                    + ("; chains that sit in different modes do not mix: more chains tell how many there are"
                       if "R-hat" in problems else ""))
    if "no R-hat" in problems:
        tips = ["run at least 2 chains (--chains)"]
    return (": try to " + "; ".join(tips)) if tips else ""


def _device(args, kwargs) -> torch.device:
    from deepprob.inference.evaluation.draws import first_float

    like = first_float(args, kwargs)
    return like.device if like is not None else torch.device("cpu")

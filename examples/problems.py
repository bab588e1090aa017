"""The examples' three regression problems (data, model, reference), shared by each example and by ``compare``.

A :class:`Problem` is what ``deepprob linreg|logreg|bnn`` fit and what ``deepprob compare linreg|logreg|bnn``
hands to :func:`deepprob.compare`: the model with its data, the names ArviZ gives its sites, the exact
posterior where there is one, and the metrics of each problem (predictive accuracy, the predictive at
a point far from the data).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.distributions import MultivariateNormal

from deepprob.datasets import Table, check_binary, cubic_regression, load_csv, sine_regression, two_classes, two_moons
from deepprob.errors import InputError
from deepprob.examples.options import resolve_batch_size
from deepprob.inference.evaluation.arviz_data import to_inference_data
from deepprob.inference.evaluation.diagnostics import predictive_metrics
from deepprob.inference.evaluation.draws import Draws, likelihood_at, predictive_mean
from deepprob.inference.evaluation.exact import conjugate_log_evidence, conjugate_posterior
from deepprob.inference.evaluation.references import Exact
from deepprob.logdensity import init_sample
from deepprob.models.bnn import BayesianNeuralNetwork
from deepprob.models.linreg import LinearRegression, expand_basis
from deepprob.models.logreg import LogisticRegression, with_bias
from deepprob.models.standardise import Standardisation

# how far from the data the far point lies by default: this many training sds along the first feature
FAR_POINT_SDS = 100.0


@dataclass
class Problem:
    """A model with its data, named for ArviZ.

    Attributes:
        name: the example (``"linreg"``, ``"logreg"``, ``"bnn"``).
        model: the Pyro model ``model(x, y)``; with ``y=None`` it draws y. Observed site ``y``, plate ``data``.
        x: the model's inputs for the N training rows, as the model takes them (standardised).
        y: the targets (N,).
        features: the training rows' raw inputs (N, F), named by ``coords["input"]``.
        to_inputs: raw rows (M, F) -> model inputs (M, ...), for new points (grids, the far point).
        var_names: the posterior sites stored and summarised (e.g. ``["weight"]``).
        dims: ArviZ dims of each site (without chain and draw); ``coords``: labels of each dim.
        likelihood: ``"bernoulli"`` or ``"normal"``.
        init_loc_fn: the guides' initialisation (``None``: each guide's default).
        evaluation: (x, y) on which predictive metrics are reported, or ``None``.
        exact: the exact posterior when known in closed form (linreg), else ``None``.
        function_space: compare posteriors through f(x) at the evaluation inputs rather than through
            ``var_names``; needed where weight space has symmetries (a network's hidden units permute).
        far_point: (label, model input (1, ...)) where the Bayesian predictive is reported, or ``None``.
        extras: what the example's own report needs (design matrices, the standardisation, ...).
    """

    name: str
    model: Callable
    x: torch.Tensor
    y: torch.Tensor
    features: torch.Tensor
    to_inputs: Callable[[torch.Tensor], torch.Tensor]
    var_names: list[str]
    dims: dict[str, list[str]]
    coords: dict[str, list]
    likelihood: str
    init_loc_fn: Callable | None = None
    evaluation: tuple[torch.Tensor, torch.Tensor] | None = None
    exact: Exact | None = None
    function_space: bool = False
    far_point: tuple[str, torch.Tensor] | None = None
    extras: dict = field(default_factory=dict)

    @property
    def fit_args(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The arguments of ``model`` (and of its guides) for the training data."""
        return self.x, self.y

    @property
    def all_dims(self) -> dict[str, list[str]]:
        return {**self.dims, "y": ["obs"], "X": ["obs", "input"]}

    @property
    def all_coords(self) -> dict[str, list]:
        return {"obs": list(range(len(self.y))), **self.coords}

    def inference_data(self, draws: Draws, attrs: dict | None = None):
        """The draws as InferenceData, with the problem's names and its raw inputs ``X`` as constant data."""
        return to_inference_data(draws, var_names=self.var_names, coords=self.all_coords, dims=self.all_dims,
                                 constant_data={"X": self.features}, attrs={"model": self.name, **(attrs or {})})

    def metrics(self, draws: Draws) -> dict:
        """Predictive accuracy on the evaluation data, the predictive at the far point."""
        row = {}
        if self.evaluation is not None:
            row.update(predictive_metrics(self.model, draws.latents, self.evaluation, self.likelihood))
        if self.far_point is not None:
            row["far_point"] = float(predictive_mean(self.model, draws.latents, self.far_point[1], None)[0])
        return row

    def function_values(self, draws: Draws) -> dict[str, torch.Tensor]:
        """f(x) (the logit, or the mean) at the evaluation inputs, per draw: {"f": (S, M)}."""
        return {"f": likelihood_at(self.model, draws.latents, self.evaluation[0], None, statistic="location")}

    def compare_kwargs(self) -> dict:
        """What :func:`deepprob.compare` needs of this problem beyond the model and its data."""
        from deepprob.guides import GuideOptions

        return {"name": self.name, "var_names": self.var_names, "coords": self.all_coords, "dims": self.all_dims,
                "constant_data": {"X": self.features}, "metrics": self.metrics,
                "quantities": self.function_values if self.function_space else None,
                "options": GuideOptions(init_loc_fn=self.init_loc_fn)}


def load_table(args: argparse.Namespace, default) -> Table:
    """The user's CSV when ``--data`` is given, else ``default()``; on ``args.device``."""
    if args.data is None:
        if args.target is not None or args.features is not None:
            raise InputError("--target/--features: only meaningful with --data FILE.csv")
        table = default()
    else:
        features = None if args.features is None else [f.strip() for f in args.features.split(",") if f.strip()]
        table = load_csv(args.data, args.target, features)
    return table.to(args.device)


# --- linear regression ---------------------------------------------------------------------------


def affine(d: MultivariateNormal, A: torch.Tensor) -> MultivariateNormal:
    """The law of A w for w ~ d."""
    return MultivariateNormal(A @ d.mean, covariance_matrix=A @ d.covariance_matrix @ A.T)


def linreg(args) -> Problem:
    """The data, basis and model of ``args``, with the exact posterior of the latent ``weight_std``.

    ``extras``: ``table``, ``basis``, ``Phi`` (N, D), ``standard`` (the map w_s = T w), ``exact``, the
    conjugate posterior N(mu, Sigma) of ``weight`` in the original coordinates (float64), and
    ``log_evidence`` = log p(y).
    """
    table = load_table(args, lambda: cubic_regression(n=args.num_points, seed=args.seed))
    basis = args.basis or ("poly:3" if args.data is None else "identity")
    Phi, names = expand_basis(table.X, basis)
    beta = args.beta or least_squares_precision(Phi, table.y)
    standard = Standardisation.of(Phi)
    exact = conjugate_posterior(Phi, table.y, args.alpha, beta)
    log_evidence = conjugate_log_evidence(Phi, table.y, args.alpha, beta)
    return Problem(
        name="linreg",
        model=LinearRegression(standard, alpha=args.alpha, beta=beta,
                               batch_size=resolve_batch_size(args.batch_size, len(table))),
        x=standard.features(Phi),
        y=table.y,
        features=table.X,
        to_inputs=lambda X: standard.features(expand_basis(X, basis)[0]),
        var_names=["weight"],
        dims={"weight": ["feature"]},
        coords={"feature": names, "input": table.feature_names},
        likelihood="normal",
        # the guides' latent is weight_std = T w: its exact law is the image of N(mu, Sigma) under T
        exact=Exact({"weight_std": affine(exact, standard.T.double())}, log_evidence),
        extras={"table": table, "basis": basis, "Phi": Phi, "standard": standard, "exact": exact,
                "log_evidence": log_evidence, "beta": beta},
    )


def least_squares_precision(Phi: torch.Tensor, y: torch.Tensor) -> float:
    """1 / the residual variance of least squares on the design ``Phi`` (N, D): the noise precision the
    data suggest (with no more points than columns, 1 / the variance of y)."""
    Phi64, y64 = Phi.double(), y.double()
    n, d = Phi64.shape
    if n <= d:
        return float(1.0 / y64.var().clamp_min(1e-12)) if n > 1 else 1.0
    w = torch.linalg.lstsq(Phi64, y64[:, None]).solution[:, 0]
    residual = y64 - Phi64 @ w
    return float(1.0 / (residual.pow(2).sum() / (n - d)).clamp_min(1e-12))


# --- logistic regression -------------------------------------------------------------------------


def far_point(text: str | None, table: Table) -> tuple[str, torch.Tensor]:
    """The point x* (D,) of ``--far-point`` (comma-separated numbers, one per feature), or by default the
    data's mean moved :data:`FAR_POINT_SDS` training sds along the first feature; and its label."""
    dim = table.X.shape[1]
    if text is None:
        point = table.X.mean(0).clone()
        point[0] += FAR_POINT_SDS * table.X[:, 0].std()
        return ",".join(f"{v:.4g}" for v in point.tolist()), point
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--far-point {text!r}: expected {dim} comma-separated numbers (one per feature)") from None
    if len(values) != dim:
        raise InputError(f"--far-point {text!r}: expected {dim} numbers (one per feature), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"--far-point {text!r}: expected finite numbers")
    return text, torch.tensor(values).to(table.X)


def logreg(args) -> Problem:
    """The data and model of ``args``; predictive metrics are reported on the training data.

    ``extras``: ``table``, ``X1`` = [1, X] (N, D+1), ``standard`` (the map w_s = T w) and ``far`` (D,).
    """
    table = load_table(args, lambda: two_classes(n=args.num_points, seed=args.seed))
    check_binary(f"--target {table.target_name}" if args.data else "labels", table.y)
    label, far = far_point(args.far_point, table)
    X1 = with_bias(table.X)
    standard = Standardisation.of(X1)
    X1_s = standard.features(X1)

    def to_inputs(X: torch.Tensor) -> torch.Tensor:
        return standard.features(with_bias(X))

    return Problem(
        name="logreg",
        model=LogisticRegression(standard, alpha=args.alpha, batch_size=resolve_batch_size(args.batch_size,
                                                                                             len(table))),
        x=X1_s,
        y=table.y,
        features=table.X,
        to_inputs=to_inputs,
        var_names=["weight"],
        dims={"weight": ["feature"]},
        coords={"feature": ["bias"] + table.feature_names, "input": table.feature_names},
        likelihood="bernoulli",
        evaluation=(X1_s, table.y),
        far_point=(label, to_inputs(far[None])),
        extras={"table": table, "X1": X1, "standard": standard, "far": far},
    )


# --- Bayesian neural network ---------------------------------------------------------------------


def parse_noise(text: str) -> float | None:
    if text == "learned":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise InputError(f"--noise {text!r}: expected 'learned' or a noise sd > 0")
    return value


def split(table: Table, fraction: float, seed: int) -> tuple[Table, Table]:
    """A random train/test split of ``table``."""
    if not 0 < fraction < 1:
        raise InputError(f"--test-fraction {fraction}: expected a number in (0, 1)")
    order = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed)).to(table.X.device)
    n_test = max(1, int(round(fraction * len(table))))
    if n_test >= len(table):
        raise InputError(f"--test-fraction {fraction}: leaves no training data out of {len(table)} points")
    part = lambda idx: Table(table.X[idx], table.y[idx], table.feature_names, table.target_name, table.source)  # noqa: E731
    return part(order[n_test:]), part(order[:n_test])


def standardise(train: Table, test: Table) -> tuple[Table, Table, torch.Tensor, torch.Tensor]:
    """Features scaled by the training set's mean and sd (a weight prior N(0, 1/alpha) assumes unit scale)."""
    mean, sd = train.X.mean(0), train.X.std(0).clamp_min(1e-8)
    scale = lambda t: Table((t.X - mean) / sd, t.y, t.feature_names, t.target_name, t.source)  # noqa: E731
    return scale(train), scale(test), mean, sd


def bnn(args) -> Problem:
    """The data, split and model of ``args``; predictive metrics are reported on the held-out split.

    Posteriors are compared in function space, through f(x) at the held-out inputs: the network's
    weights have exact symmetries (hidden units permute; tanh is odd, so a unit's signs flip), which
    make weight-space means and sds meaningless across modes. ``extras``: ``table`` (all the data),
    ``train`` and ``test`` (standardised), ``mean`` and ``sd`` of the standardisation.
    """
    if args.task == "classification":
        default = lambda: two_moons(n=args.num_points or 400, seed=args.seed)  # noqa: E731
    else:
        default = lambda: sine_regression(n=args.num_points or 100, seed=args.seed)  # noqa: E731
    table = load_table(args, default)
    if args.task == "classification":
        check_binary(f"--target {table.target_name}" if args.data else "labels", table.y)
    raw_train, raw_test = split(table, args.test_fraction, args.seed)
    train, test, mean, sd = standardise(raw_train, raw_test)
    noise = parse_noise(args.noise)
    # regression: the network's output on the training targets' scale, whatever their units
    location, scale = (float(train.y.mean()), float(train.y.std().clamp_min(1e-8))) if args.task == "regression" \
        else (0.0, 1.0)
    model = BayesianNeuralNetwork(table.X.shape[1], args.hidden, args.alpha, args.task, noise, location, scale,
                                  batch_size=resolve_batch_size(args.batch_size, len(train)))
    learned_noise = args.task == "regression" and noise is None
    return Problem(
        name="bnn",
        model=model,
        x=train.X,
        y=train.y,
        features=raw_train.X,
        to_inputs=lambda X: (X - mean) / sd,
        var_names=["W1", "b1", "W2", "b2"] + (["sigma"] if learned_noise else []),
        dims={"W1": ["input", "hidden"], "b1": ["hidden"], "W2": ["hidden"], "b2": ["output"]},
        coords={"input": table.feature_names, "hidden": list(range(args.hidden)), "output": [0]},
        likelihood="bernoulli" if args.task == "classification" else "normal",
        init_loc_fn=init_sample,
        evaluation=(test.X, test.y),
        function_space=True,
        extras={"table": table, "train": train, "test": test, "mean": mean, "sd": sd},
    )


PROBLEMS = {"linreg": linreg, "logreg": logreg, "bnn": bnn}


def default_problem(name: str, **options) -> Problem:
    """The built-in problem ``name`` (linreg, logreg, bnn) with its command-line defaults, but ``options``
    (``num_points=12``, say): the problems of the examples, from Python."""
    from deepprob.examples.options import PROBLEM_ARGUMENTS

    parser = argparse.ArgumentParser()
    PROBLEM_ARGUMENTS[name](parser)
    args = parser.parse_args([])
    args.seed, args.device = 0, torch.device("cpu")
    vars(args).update(options)
    return PROBLEMS[name](args)

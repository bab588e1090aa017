"""The No-U-Turn sampler on a potential given as a function of a NumPy vector: multinomial NUTS with Stan's warmup.

The reference's cost is per leapfrog step. Pyro's NUTS kernel spends about 220 µs of Python on each (its
trajectory is built of dictionaries of torch tensors, through Pyro's messengers), where the compiled log density
and its gradient take about 10 µs. This kernel builds the same kind of trajectory on float64 NumPy vectors, so
that the gradient is most of a step's cost.

- **The transition** (Hoffman and Gelman 2014; Betancourt 2017, "A Conceptual Introduction to Hamiltonian Monte
  Carlo", appendix A): the trajectory doubles in a random direction until it makes a U-turn or reaches
  2^``max_tree_depth`` steps. The draw is taken across the trajectory with probability proportional to
  exp(-H): multinomially within each new subtree, and with a bias towards the new subtree when it is merged
  with the old trajectory (progressive sampling). The U-turn criterion is the generalised one, p♯ · ρ > 0 at
  both ends, where p♯ = M⁻¹ p and ρ is the sum of the momenta, checked over each merged tree and over the two
  trees extended by one point of the other (Stan's checks since 2.23, which close the gap where a trajectory of
  two halves turned between them). A step whose energy error exceeds 1000 is divergent and ends the trajectory.
- **The warmup** (Stan's): the step size by dual averaging (Nesterov 2009; γ = 0.05, t₀ = 10, κ = 0.75, towards
  10 × the initial step) to an acceptance statistic of ``target_accept``; the inverse mass matrix M⁻¹ (dense or
  diagonal) from the draws of windows of 25, 50, 100, ... steps between a first buffer of 75 and a last of 50,
  shrunk towards 10⁻³ I as Stan does; after each window the step size is found again by doubling or halving
  until one step's acceptance crosses 0.8, and dual averaging starts over.

:class:`NUTS` is the kernel: ``warm_up()`` then ``draw(n)`` as often as wanted (a chain's state and random
numbers are kept between calls). It imports neither torch nor Pyro.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_ENERGY_ERROR = 1000.0  # Stan's: a step whose energy error exceeds this is divergent
INIT_BUFFER, TERM_BUFFER, BASE_WINDOW = 75, 50, 25  # Stan's warmup windows

Potential = Callable[[np.ndarray], tuple[float, np.ndarray]]  # q (D,) -> (U(q), dU/dq (D,)), U = -log density


@dataclass(slots=True)
class _Point:
    """A point of phase space: position q, momentum p, velocity v = M⁻¹ p, the potential U and its gradient."""

    q: np.ndarray
    p: np.ndarray
    v: np.ndarray
    potential: float
    grad: np.ndarray

    def energy(self) -> float:
        return self.potential + 0.5 * float(self.p @ self.v)


@dataclass(slots=True)
class _Tree:
    """A trajectory: its first and last points in time, the draw taken from it, log Σ exp(H₀ - H) over its
    points, and ρ, the sum of its momenta."""

    left: _Point
    right: _Point
    proposal: _Point
    log_weight: float
    rho: np.ndarray


def _no_u_turn(left: _Point, right: _Point, rho: np.ndarray) -> bool:
    return float(left.v @ rho) > 0.0 and float(right.v @ rho) > 0.0


def _merged_no_u_turn(first: _Tree, second: _Tree, rho: np.ndarray) -> bool:
    """The generalised criterion over two adjacent trees in time order: over both, and over each extended by the
    nearest point of the other."""
    return (_no_u_turn(first.left, second.right, rho)
            and _no_u_turn(first.left, second.left, first.rho + second.left.p)
            and _no_u_turn(first.right, second.right, second.rho + first.right.p))


class Metric:
    """The Euclidean metric of the kinetic energy ½ pᵀ M⁻¹ p, from the inverse mass matrix M⁻¹: (D, D) dense or
    (D,) diagonal. Momenta are drawn from N(0, M)."""

    def __init__(self, inverse: np.ndarray):
        self.inverse = inverse
        if inverse.ndim == 2:
            # M⁻¹ = L Lᵀ gives M = L⁻ᵀ L⁻¹, so p = L⁻ᵀ z has covariance M
            self._momentum = np.linalg.inv(np.linalg.cholesky(inverse)).T
        else:
            self._momentum = 1.0 / np.sqrt(inverse)

    def velocity(self, p: np.ndarray) -> np.ndarray:
        return self.inverse @ p if self.inverse.ndim == 2 else self.inverse * p

    def momentum(self, z: np.ndarray) -> np.ndarray:
        return self._momentum @ z if self._momentum.ndim == 2 else self._momentum * z

    @classmethod
    def estimated(cls, draws: np.ndarray, dense: bool) -> Metric:
        """Stan's regularised estimate from a window's draws (n, D): (n / (n + 5)) Σ̂ + 10⁻³ (5 / (n + 5)) I."""
        n = len(draws)
        shrink, ridge = n / (n + 5.0), 1e-3 * 5.0 / (n + 5.0)
        if dense:
            cov = np.atleast_2d(np.cov(draws, rowvar=False))
            return cls(shrink * cov + ridge * np.eye(draws.shape[1]))
        return cls(shrink * draws.var(axis=0, ddof=1) + ridge)


def warmup_windows(warmup: int) -> tuple[int, list[int]]:
    """(first, ends): the iteration at which Stan's warmup starts collecting draws for the mass matrix, and the
    iterations (exclusive) at which it ends a window and estimates it: windows of 25, 50, 100, ... after a first
    buffer of 75 steps, the last stretched to 50 steps before the end of warmup. Short warmups keep Stan's
    proportions (15% first, 10% last); under 20 steps, no window."""
    if warmup < 20:
        return warmup, []
    init, term, base = INIT_BUFFER, TERM_BUFFER, BASE_WINDOW
    if init + base + term > warmup:
        init, term = int(0.15 * warmup), int(0.1 * warmup)
        base = warmup - init - term
    ends, start, size = [], init, base
    while True:
        end = start + size
        if end + 2 * size > warmup - term:
            ends.append(warmup - term)
            return init, ends
        ends.append(end)
        start, size = end, 2 * size


class _DualAveraging:
    """Nesterov's dual averaging of log step size towards an acceptance statistic (Hoffman and Gelman 2014, 3.2.1)
    with Stan's constants."""

    def __init__(self, step_size: float, target: float):
        self.mu, self.target = math.log(10.0 * step_size), target
        self.count, self.s_bar, self.x_bar = 0, 0.0, 0.0

    def update(self, accept_stat: float) -> float:
        self.count += 1
        eta = 1.0 / (self.count + 10.0)
        self.s_bar = (1.0 - eta) * self.s_bar + eta * (self.target - min(1.0, accept_stat))
        x = self.mu - self.s_bar * math.sqrt(self.count) / 0.05
        weight = self.count ** -0.75
        self.x_bar = (1.0 - weight) * self.x_bar + weight * x
        return math.exp(x)

    def final(self) -> float:
        return math.exp(self.x_bar)


class NUTS:
    """One chain of multinomial NUTS on ``potential`` (q -> (U, dU/dq)), started at ``start`` (D,).

    Args:
        potential: the negative log density and its gradient at a float64 vector.
        start: the chain's first position.
        seed: of the chain's own random numbers (NumPy's PCG64).
        warmup: steps of adaptation (:meth:`warm_up`); 0 keeps ``step_size`` and the unit metric.
        target_accept: the mean acceptance statistic the step size is adapted to.
        max_tree_depth: at most 2^max_tree_depth leapfrog steps a transition.
        dense: a dense inverse mass matrix, else diagonal.

    Attributes:
        step_size; metric (:class:`Metric`); divergences: divergent transitions after warmup; leapfrogs: every
        leapfrog step (gradient evaluations), warmup included; tree_depths: of the draws after warmup.
    """

    def __init__(self, potential: Potential, start: np.ndarray, *, seed: int, warmup: int = 1000,
                 target_accept: float = 0.8, max_tree_depth: int = 10, dense: bool = True, step_size: float = 1.0):
        self.potential, self.warmup, self.target = potential, warmup, target_accept
        self.max_tree_depth, self.dense = max_tree_depth, dense
        self.rng = np.random.default_rng(seed)
        q = np.array(start, dtype=np.float64)
        self.metric = Metric(np.eye(len(q)) if dense else np.ones(len(q)))
        U, grad = potential(q)
        self.point = _Point(q, np.zeros_like(q), np.zeros_like(q), U, grad)
        if not math.isfinite(U):
            raise ValueError(f"NUTS: the log density is not finite at the start ({-U})")
        self.step_size = step_size
        self.divergences, self.leapfrogs, self.tree_depths = 0, 0, []
        self._accept_sum, self._leaves = 0.0, 0  # of the current transition: Σ min(1, exp(H0 - H)), leapfrog steps
        self._divergent = False

    # --- the integrator ------------------------------------------------------------------------------------------

    def _leapfrog(self, point: _Point, eps: float) -> _Point:
        p = point.p - (0.5 * eps) * point.grad
        q = point.q + eps * self.metric.velocity(p)
        U, grad = self.potential(q)
        p = p - (0.5 * eps) * grad
        self.leapfrogs += 1
        return _Point(q, p, self.metric.velocity(p), U, grad)

    def _fresh_momentum(self, point: _Point) -> _Point:
        p = self.metric.momentum(self.rng.standard_normal(len(point.q)))
        return _Point(point.q, p, self.metric.velocity(p), point.potential, point.grad)

    # --- the transition ------------------------------------------------------------------------------------------

    def _leaf(self, start: _Point, direction: int, H0: float) -> _Tree | None:
        point = self._leapfrog(start, direction * self.step_size)
        H = point.energy()
        if not math.isfinite(H):
            H = math.inf
        self._accept_sum += 1.0 if H0 - H > 0 else math.exp(H0 - H)
        self._leaves += 1
        if H - H0 > MAX_ENERGY_ERROR:
            self._divergent = True
            return None
        return _Tree(point, point, point, H0 - H, point.p)

    def _build(self, depth: int, start: _Point, direction: int, H0: float) -> _Tree | None:
        """A tree of 2^depth steps from ``start`` in ``direction``; None where it diverged or turned."""
        if depth == 0:
            return self._leaf(start, direction, H0)
        first = self._build(depth - 1, start, direction, H0)
        if first is None:
            return None
        second = self._build(depth - 1, first.right if direction > 0 else first.left, direction, H0)
        if second is None:
            return None
        log_weight = np.logaddexp(first.log_weight, second.log_weight)
        take = self.rng.uniform() < math.exp(second.log_weight - log_weight)
        proposal = second.proposal if take else first.proposal
        earlier, later = (first, second) if direction > 0 else (second, first)
        rho = first.rho + second.rho
        if not _merged_no_u_turn(earlier, later, rho):
            return None
        return _Tree(earlier.left, later.right, proposal, log_weight, rho)

    def _transition(self) -> tuple[float, int]:
        """One NUTS draw from ``self.point``: (acceptance statistic, tree depth)."""
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging trajectory's energy overflows: inf, as meant
            return self._trajectory()

    def _trajectory(self) -> tuple[float, int]:
        start = self._fresh_momentum(self.point)
        H0 = start.energy()
        tree = _Tree(start, start, start, 0.0, start.p)
        self._accept_sum, self._leaves, self._divergent = 0.0, 0, False
        depth = 0
        while depth < self.max_tree_depth:
            direction = 1 if self.rng.uniform() < 0.5 else -1
            new = self._build(depth, tree.right if direction > 0 else tree.left, direction, H0)
            depth += 1
            if new is None:
                break
            # progressive sampling biased towards the new half (Betancourt 2017, A.3.2)
            if new.log_weight > tree.log_weight or self.rng.uniform() < math.exp(new.log_weight - tree.log_weight):
                proposal = new.proposal
            else:
                proposal = tree.proposal
            earlier, later = (tree, new) if direction > 0 else (new, tree)
            rho = tree.rho + new.rho
            turned = not _merged_no_u_turn(earlier, later, rho)
            tree = _Tree(earlier.left, later.right, proposal, np.logaddexp(tree.log_weight, new.log_weight), rho)
            if turned:
                break
        self.point = tree.proposal
        return self._accept_sum / max(1, self._leaves), depth

    # --- warmup and draws ----------------------------------------------------------------------------------------

    def _initial_step_size(self) -> None:
        """Stan's heuristic: double or halve the step until one leapfrog step's acceptance crosses 0.8."""
        start = self._fresh_momentum(self.point)
        H0 = start.energy()

        def log_accept() -> float:
            with np.errstate(over="ignore", invalid="ignore"):  # a step far too long overflows: inf, rejected
                H = self._leapfrog(start, self.step_size).energy()
            return H0 - H if math.isfinite(H) else -math.inf

        direction = 1 if log_accept() > math.log(0.8) else -1
        for _ in range(100):
            self.step_size *= 2.0 if direction > 0 else 0.5
            crossed = log_accept() <= math.log(0.8) if direction > 0 else log_accept() >= math.log(0.8)
            if crossed or not 1e-10 < self.step_size < 1e7:
                return

    def warm_up(self, on_step: Callable[[], None] | None = None) -> None:
        """``warmup`` transitions adapting the step size and the metric; none of them is kept."""
        if self.warmup == 0:
            return
        self._initial_step_size()
        averaging = _DualAveraging(self.step_size, self.target)
        first, ends = warmup_windows(self.warmup)
        window = []
        for i in range(self.warmup):
            accept_stat, _ = self._transition()
            self.step_size = averaging.update(accept_stat)
            if ends and first <= i < ends[-1]:
                window.append(self.point.q)
            if i + 1 in ends:
                self.metric = Metric.estimated(np.array(window), self.dense)
                window = []
                self._initial_step_size()
                averaging = _DualAveraging(self.step_size, self.target)
            if on_step is not None:
                on_step()
        self.step_size = averaging.final()

    def draw(self, n: int, on_step: Callable[[], None] | None = None) -> np.ndarray:
        """``n`` draws (n, D), continuing the chain."""
        draws = np.empty((n, len(self.point.q)))
        for i in range(n):
            _, depth = self._transition()
            self.divergences += self._divergent
            self.tree_depths.append(depth)
            draws[i] = self.point.q
            if on_step is not None:
                on_step()
        return draws

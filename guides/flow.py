"""``flow`` and ``iaf``: normalizing flows over the unconstrained latent vector (Pyro's transforms).

    u = A(F_L(... F_1(eps))),  eps ~ N(0, I_D),    A(v) = loc + L v  (L lower triangular, positive diagonal)

    log q(u) = log N(eps; 0, I) - sum_l log|det dF_l| - sum_i log L_ii

``flow``: each F_l a rational-quadratic spline autoregressive transform (Durkan et al. 2019; Pyro's
``spline_autoregressive``, identity outside [-bound, bound]); ``iaf``: each an affine autoregressive one
(inverse autoregressive flow, Kingma et al. 2016; Pyro's ``affine_autoregressive``, as in ``AutoIAFNormal``).
``depth`` is L and ``width`` the hidden units of each autoregressive network (Pyro's default where None).
The flows act in the frame of the affine map A, which is trained with them; with the Laplace start A begins
at N(mode, H^{-1}), or, where the search for modes finds several, at the Gaussian with their mixture's
mean and covariance (:func:`~deepprob.guides.start.find_modes`), so that the flows begin wide enough to
cover every mode found and carve them out; with Pyro's start, at the initial point with sd ``init_scale``.
"""

from __future__ import annotations

import math
import warnings

import torch
from pyro.distributions import Normal, TransformedDistribution, constraints
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms import affine_autoregressive, spline_autoregressive
from pyro.infer.autoguide import AutoContinuous

from deepprob.guides.protocol import Draw, Family, PureForm
from deepprob.guides.start import StartsAtLaplace, covering_frame
from deepprob.logdensity import init_median

FLOWS = {"spline": spline_autoregressive, "affine": affine_autoregressive}


class AffineFrame(TransformModule):
    """v -> loc + L v with L = strictly_lower(lower) + diag(exp(log_diagonal)): a trainable affine bijection."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor):
        super().__init__(cache_size=1)
        self.loc = torch.nn.Parameter(loc.detach().clone())
        self.log_diagonal = torch.nn.Parameter(scale_tril.diagonal().log().detach().clone())
        self.lower = torch.nn.Parameter(scale_tril.tril(-1).detach().clone())
        # a mask, not tril(): Inductor mis-compiles tril(-1) of a 1 x 1 matrix (an empty index_put)
        self.register_buffer("strictly_lower", torch.ones_like(scale_tril).tril(-1))

    @property
    def scale_tril(self) -> torch.Tensor:
        return self.lower * self.strictly_lower + torch.diag_embed(self.log_diagonal.exp())

    def set(self, loc: torch.Tensor, scale_tril: torch.Tensor) -> None:
        with torch.no_grad():
            self.loc.copy_(loc)
            self.log_diagonal.copy_(scale_tril.diagonal().log())
            self.lower.copy_(scale_tril.tril(-1))

    def _call(self, x):
        return self.loc + (self.scale_tril @ x.unsqueeze(-1)).squeeze(-1)

    def _inverse(self, y):
        return torch.linalg.solve_triangular(self.scale_tril, (y - self.loc).unsqueeze(-1), upper=False).squeeze(-1)

    def log_abs_det_jacobian(self, x, y):
        return self.log_diagonal.sum().expand(x.shape[:-1])


class FlowGuide(AutoContinuous, Family):
    """A normalizing flow q(u) over the unconstrained latent vector u (D,).

    Args:
        model: the Pyro model.
        kind: ``"spline"`` or ``"affine"`` (IAF) autoregressive transforms.
        depth: the number of transforms L.
        width: hidden units of each of the two layers of each transform's autoregressive network, at least D
            (None: Pyro's default).
        init_loc_fn, init_scale: the frame's start (Pyro's start: loc at the initial point, sd ``init_scale``).

    Parameters after the first call: ``flows`` (the transforms' networks) and ``frame`` (loc, L).
    """

    def __init__(self, model, kind: str = "spline", depth: int = 2, width: int | None = None,
                 init_loc_fn=init_median, init_scale: float = 0.1):
        if kind not in FLOWS:
            raise ValueError(f"kind {kind!r}: expected one of {', '.join(FLOWS)}")
        if depth < 1:
            raise ValueError(f"depth: expected >= 1, got {depth}")
        self.kind, self.depth, self.width, self._init_scale = kind, depth, width, init_scale
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        loc = self._init_loc()
        # at least one unit an input: Pyro's masks give each hidden unit one input's degree, and fewer units than
        # inputs leave some inputs' conditionals without any
        hidden = None if self.width is None else [max(self.width, self.latent_dim)] * 2
        with warnings.catch_warnings():  # Pyro warns that an autoregressive network of one input is degenerate
            warnings.simplefilter("ignore")
            self.flows = torch.nn.ModuleList([FLOWS[self.kind](self.latent_dim, hidden_dims=hidden)
                                              for _ in range(self.depth)])
        self.flows.to(device=loc.device, dtype=loc.dtype)
        self.frame = AffineFrame(loc, torch.diag_embed(torch.full_like(loc, self._init_scale)))

    @property
    def untraceable(self) -> str | None:
        """Why the compiled engine cannot take this flow, or None."""
        if self.kind == "spline":
            return ("Pyro's spline transforms index by masks that depend on the values (which draws fall inside "
                    "the spline's interval), so a traced step cannot hold them")
        return None

    def transforms(self) -> list:
        return [*self.flows, self.frame]

    def get_posterior(self, *args, **kwargs):
        like = self.frame.loc
        base = Normal(like.new_zeros(()), like.new_ones(())).expand([self.latent_dim]).to_event(1)
        return TransformedDistribution(base, self.transforms())

    def push(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, log q(u)) for base draws ``eps`` (S, D): the pure form of a draw (the compiled engine's)."""
        # a fresh tensor: Pyro's transforms cache their last (x, y) by identity, and a tracer (make_fx) that is
        # handed the same noise tensor twice would otherwise get the first trace's y back, as a constant
        x, log_det = eps.clone(), eps.new_zeros(eps.shape[:-1])
        for transform in self.transforms():
            y = transform(x)
            log_det = log_det + transform.log_abs_det_jacobian(x, y)
            x = y
        log_base = -0.5 * eps.pow(2).sum(-1) - 0.5 * eps.shape[-1] * math.log(2 * math.pi)
        return x, log_base - log_det


    def pure_form(self):
        return FlowDraw(self)


class FlowDraw(PureForm):
    """u = A(F_L(... F_1(eps))), the transforms' parameters swapped in by ``torch.func.functional_call`` (the
    guide's :meth:`FlowGuide.push`), so that the flows' own code is the pure form."""

    def draw(self, params, noise):
        (eps,) = noise
        z, log_q = torch.func.functional_call(_Push(self.guide), {f"guide.{k}": v for k, v in params.items()},
                                              (eps,))
        return Draw(z, log_q)


class _Push(torch.nn.Module):
    def __init__(self, guide):
        super().__init__()
        self.guide = guide

    def forward(self, eps):
        return self.guide.push(eps)


class FlowFromLaplace(StartsAtLaplace, FlowGuide):
    """The frame starts at the Laplace approximation, or covering the modes the search finds."""

    find_modes = True

    def start_from(self, start):
        loc, covariance = covering_frame(start)
        self.frame.set(loc, torch.linalg.cholesky(covariance))
        self.step_scales = {"frame.loc": start.sds}


def build_flow(model, options, kind: str):
    family = FlowFromLaplace if options.start == "laplace" else FlowGuide
    return family(model, kind=kind, depth=options.depth, width=options.width, init_scale=options.init_scale,
                  **options.loc_kwargs())


def build(model, options):
    return build_flow(model, options, "spline")


def build_iaf(model, options):
    return build_flow(model, options, "affine")

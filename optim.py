"""Adam and its learning-rate decay, written once, for torch optimisers and for traced steps alike.

- :class:`ExponentialDecay`: the learning rate lr_t = lr_0 * gamma^t, from lr_0 to lr_0 * final_fraction
  over a fit (every fit here decays this way, or keeps lr_0 with ``final_fraction=1``);
- :func:`make_adam`: ``torch.optim.Adam``, with the fused kernel where this torch has it;
- :func:`adam_arithmetic`: Adam's update as out-of-place tensor arithmetic (``torch.optim.Adam``'s, no
  weight decay or amsgrad): traceable by ``make_fx`` and differentiable, for compiled steps
  (:func:`adam_update_`) and for look-ahead steps (unrolled GANs);
- :class:`AdamStepper`: a torch Adam's update for given gradients without ``optimizer.step()``'s
  bookkeeping (the fused kernel called directly).

Plain torch only: the GAN code uses it without Pyro.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from deepprob.errors import InputError

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


@dataclass(frozen=True)
class ExponentialDecay:
    """lr_t = lr * exp(t * log_gamma): from ``lr`` at step 0 to ``lr * final_fraction`` at step ``steps``.

    ``at(t)`` takes a step number (int) or a 0-dim tensor (a traced step), ``apply`` sets an optimiser's
    learning rate for step t (call it before that step).
    """

    lr: float
    steps: int
    final_fraction: float = 0.1

    def __post_init__(self):
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise InputError(f"--lr {self.lr}: expected a finite learning rate > 0")
        if not 0 < self.final_fraction <= 1:
            raise InputError(f"final_lr_fraction {self.final_fraction}: expected a number in (0, 1]")

    @property
    def log_gamma(self) -> float:
        return math.log(self.final_fraction) / max(1, self.steps)

    def at(self, step, lr=None, log_gamma=None):
        """The learning rate of step ``step``; ``lr`` and ``log_gamma`` may be given as tensors (the
        inputs of a compiled step, so that one compiled graph serves any of them)."""
        lr = self.lr if lr is None else lr
        log_gamma = self.log_gamma if log_gamma is None else log_gamma
        if isinstance(step, torch.Tensor) or isinstance(log_gamma, torch.Tensor):
            return lr * torch.exp(log_gamma * step)
        return lr * math.exp(log_gamma * step)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.at(step)


def collect_parameters(*modules) -> list[torch.nn.Parameter]:
    """The distinct trainable parameters of ``modules`` (nn.Modules, or bound methods of one)."""
    seen, params = set(), []
    for module in modules:
        module = getattr(module, "__self__", module)  # a model given as a method of an nn.Module
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


def make_adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = ADAM_BETAS,
              weight_decay: float = 0.0, fused: bool = False) -> torch.optim.Adam:
    """``torch.optim.Adam``; with ``fused``, its fused kernel where this torch has it for the device."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)


def adam_arithmetic(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t, lr,
                    betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS,
                    sqrt_floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adam's step number ``t`` (1 for the first), out of place: returns the new (p, m, v).

        m <- m + (1 - b1) (g - m),   v <- b2 v + (1 - b2) g^2,
        p <- p - lr / (1 - b1^t) * m / (sqrt(v + sqrt_floor) / sqrt(1 - b2^t) + eps)

    ``torch.optim.Adam``'s arithmetic (the bias corrections in float64 as it computes them). ``t`` and
    ``lr`` are numbers or 0-dim tensors. ``sqrt_floor`` > 0 keeps the square root off zero where the
    step is differentiated (sqrt'(0) is infinite: a parameter whose gradient is exactly 0 would turn
    the backward pass into 0 * inf = NaN).
    """
    b1, b2 = betas
    if isinstance(t, torch.Tensor):
        t = t.double()
        root_bias2 = (1 - b2**t).sqrt()
    else:
        root_bias2 = math.sqrt(1 - b2**t)
    step_size = lr / (1 - b1**t)
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    root_v = (v + sqrt_floor).sqrt() if sqrt_floor else v.sqrt()
    return p - step_size * m / (root_v / root_bias2 + eps), m, v


def adam_update_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], exp_avgs: Sequence[torch.Tensor],
                 exp_avg_sqs: Sequence[torch.Tensor], step: torch.Tensor | Sequence[torch.Tensor],
                 lr: torch.Tensor | float, betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS) -> None:
    """One Adam update in place (:func:`adam_arithmetic`), as ``make_fx`` traces input mutations.

    ``step`` (a 0-dim tensor, the steps taken so far, or one per parameter as in ``torch.optim.Adam``'s
    state, all equal) is incremented in place. ``lr``: one learning rate, or one per parameter (a tensor
    broadcastable to it: per-coordinate learning rates).
    """
    counters = [step] if isinstance(step, torch.Tensor) else list(step)
    t = counters[0] + 1
    lrs = lr if isinstance(lr, (list, tuple)) else [lr] * len(params)
    for p, g, m, v, lr_p in zip(params, grads, exp_avgs, exp_avg_sqs, lrs):
        p_new, m_new, v_new = adam_arithmetic(p, g, m, v, t, lr_p, betas, eps)
        p.copy_(p_new)
        m.copy_(m_new)
        v.copy_(v_new)
    for counter in counters:
        counter.copy_(t)


def adam_state(optimizer: torch.optim.Adam) -> tuple[list, list, list]:
    """The optimiser's (exp_avgs, exp_avg_sqs, steps) for its parameters, created as ``torch.optim.Adam``
    creates them on its first step where it has not stepped yet (so that updating them in place, then
    ``state_dict()``, a resume or further ``optimizer.step()`` calls, all carry on as torch would)."""
    state = optimizer.state
    for group in optimizer.param_groups:
        fused = bool(group.get("fused"))
        on_device = fused or bool(group.get("capturable"))
        # torch's rule for the step counter's dtype and device
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 and not fused else torch.float32
        for p in group["params"]:
            if not state[p]:
                step = torch.zeros((), dtype=dtype, device=p.device if on_device else "cpu")
                state[p].update(step=step, exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                                exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return ([state[p]["exp_avg"] for p in params], [state[p]["exp_avg_sq"] for p in params],
            [state[p]["step"] for p in params])


def is_plain_adam(optimizer: torch.optim.Optimizer) -> bool:
    """One parameter group of ``torch.optim.Adam`` without weight decay, amsgrad or maximize."""
    group = optimizer.param_groups[0]
    return (isinstance(optimizer, torch.optim.Adam) and len(optimizer.param_groups) == 1
            and not group.get("weight_decay") and not group.get("amsgrad") and not group.get("maximize"))


class AdamStepper:
    """Applies ``optimizer``'s Adam update for given gradients.

    ``optimizer.step()`` costs ~0.2 ms of Python bookkeeping per call on top of the fused kernel, as
    much as the kernel itself for small networks, and a GAN iteration makes six of them. For a plain
    Adam (:func:`is_plain_adam`) whose group is fused, this calls the fused kernel directly on the
    optimiser's own state tensors (:func:`adam_state`): the update, ``state_dict()`` and learning-rate
    changes are all as with ``optimizer.step()``. Any other optimiser goes through ``.grad`` and
    ``optimizer.step()``.

    ``torch._fused_adam_`` is the one private torch API used here (``tests/test_gan.py`` checks it
    against ``torch.optim.Adam``, and fails loudly if it changes or goes).

    Attributes:
        plain: a plain Adam (then ``exp_avgs``, ``exp_avg_sqs`` and ``steps`` are its state tensors, which
            a compiled step may update in place).
        direct: plain and fused: :meth:`step` calls the fused kernel.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.params = list(optimizer.param_groups[0]["params"])
        self.plain = is_plain_adam(optimizer)
        self.direct = self.plain and bool(self.group.get("fused")) and hasattr(torch, "_fused_adam_")
        if self.plain:
            self.exp_avgs, self.exp_avg_sqs, self.steps = adam_state(optimizer)

    @property
    def group(self) -> dict:
        return self.optimizer.param_groups[0]

    def step(self, grads: Sequence[torch.Tensor]) -> None:
        if not self.direct:
            for p, g in zip(self.params, grads):
                p.grad = g
            self.optimizer.step()
            return
        beta1, beta2 = self.group["betas"]
        torch._foreach_add_(self.steps, 1)
        torch._fused_adam_(
            self.params, list(grads), self.exp_avgs, self.exp_avg_sqs, [], self.steps,
            lr=float(self.group["lr"]), beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.group["eps"],
            amsgrad=False, maximize=False,
        )  # fmt: skip

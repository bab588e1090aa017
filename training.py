"""One training loop's chores, for hand-written loops: a progress bar, the stop at a non-finite loss naming its step
(and which loss, where a loop has two), and a checkpoint hook.

    loop = TrainingLoop("GAN", total=iterations, progress=progress, unit="it", checkpoint=save, checkpoint_every=100)
    for step in loop:                       # steps 0 .. total - 1 (from ``start`` on a resumed run)
        d, g = one_iteration()
        loop.record(step, postfix=f"d_loss={d:.3f}, g_loss={g:.3f}", d_loss=d, g_loss=g)
    loop.close("g_loss 0.69")                # off a terminal the bar's line: "GAN: 1000 its in 3.1 s, g_loss 0.69"

:meth:`TrainingLoop.record` raises :class:`~deepprob.errors.FitDivergedError` for a loss that is NaN or infinite,
worded the same for every fit: "the loss became nan at step 12; ..." (with its name where a loop has two: "the
d_loss became nan at step 12; ..."). A loop that reads its losses back from the device only now and then records
only then (or checks a whole stretch of them at once with :func:`check_steps`).

The bar is :func:`deepprob.progress.bar`'s (nothing is drawn with ``progress=False``); it moves every ``every``
steps, with the last postfix recorded or, given ``postfix`` (a function of the steps since the last move, a
``slice``), the text it makes of them then::

    losses = np.empty(steps)
    loop = TrainingLoop("SVI", steps, progress=progress, every=max(1, steps // 200),
                        postfix=lambda window: f"elbo {-losses[window].mean():.4g}")
    for step in loop:
        losses[step] = adam_step()
        loop.record(step, loss=losses[step])
    loop.close(f"elbo {-losses[-max(1, steps // 20):].mean():.4g}")

A loop whose steps are epochs of many minibatches counts the minibatches with ``ticks`` (per step) and moves the
bar within a step by ``loop.update(n)`` (a loop stands in for a bar: ``trainer.train_epoch(x, order, loop)``).

``checkpoint(steps_done)`` runs after every ``checkpoint_every`` steps and after the last one (unless
``checkpoint_at_end=False``), once the step's body is done. The loop draws no random numbers and does no arithmetic
on the caller's values beyond ``math.isfinite``: a loop written with it runs as it ran without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from deepprob.errors import NAN_HINT, FitDivergedError
from deepprob.progress import bar as progress_bar


def check_finite(step: int, **losses: float) -> None:
    """Raise :class:`~deepprob.errors.FitDivergedError` for the first of ``losses`` (by name, in the order given)
    that is NaN or infinite, naming it and ``step``: ``check_finite(7, loss=v)`` says "the loss became nan at step
    7; ...", ``check_finite(7, d_loss=d, g_loss=g)`` "the d_loss became ..."."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise FitDivergedError(f"the {name} became {value} at step {step}; {NAN_HINT}")


def check_steps(losses, first_step: int, name: str = "loss") -> None:
    """:func:`check_finite` for a stretch of consecutive steps' losses (a 1-D tensor or array; the first is step
    ``first_step``) in one host synchronisation: names the first step whose loss is not finite."""
    values = torch.as_tensor(losses)
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        i = int(bad[0, 0])
        check_finite(first_step + i, **{name: float(values[i])})


class TrainingLoop:
    """Steps ``start .. total - 1`` of a training loop, with its progress bar, NaN checks and checkpoint hook (see
    the module's doc).

    Args:
        desc: the bar's label.
        total: the steps of the whole run (iterations, or epochs).
        start: the first step (a resumed run's); the bar counts the steps from here.
        progress: draw the bar (False: nothing at all).
        unit: what the bar counts ("step", "it", ...).
        every: move the bar after every ``every`` steps (and after the last).
        ticks: bar units per step (an epoch's minibatches), moved by :meth:`update` within the step; whatever a
            step did not move is moved at its end.
        postfix: ``window -> text`` for the bar, called when it moves (never with ``progress=False``) with the
            slice of the steps since it last moved, unless :meth:`record` gave a text since.
        checkpoint: ``steps_done -> None``, called after every ``checkpoint_every`` steps and, with
            ``checkpoint_at_end``, after the last.
    """

    def __init__(
        self,
        desc: str,
        total: int,
        *,
        start: int = 0,
        progress: bool = True,
        unit: str = "step",
        every: int = 1,
        ticks: int = 1,
        postfix: Callable[[slice], str] | None = None,
        checkpoint: Callable[[int], object] | None = None,
        checkpoint_every: int = 1,
        checkpoint_at_end: bool = True,
    ):
        self.total, self.start, self.every, self.ticks = total, start, max(1, every), ticks
        self.progress, self.postfix = progress, postfix
        self.checkpoint, self.checkpoint_every, self.checkpoint_at_end = checkpoint, checkpoint_every, checkpoint_at_end
        self.bar = progress_bar(desc, max(0, total - start) * ticks, unit=unit, enabled=progress)
        self._text: str | None = None  # the postfix recorded since the bar last moved
        self._steps = self._pending = self._ticked = 0  # since the bar last moved: steps, units; this step's units

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.total):
            self._ticked = 0
            yield step
            self._end(step)  # once the step's body is done (not after an exception or a break in it)

    def due(self, step: int, every: int) -> bool:
        """Whether ``step`` ends a stretch of ``every`` steps, or is the last: ``(step + 1) % every == 0``."""
        return (step + 1) % every == 0 or step + 1 == self.total

    def record(self, step: int, postfix: str | None = None, **losses: float) -> None:
        """Check ``losses`` (floats, by name; :func:`check_finite` naming ``step``), and show ``postfix`` on the bar
        when it next moves."""
        check_finite(step, **losses)
        if postfix is not None:
            self._text = postfix

    def update(self, n: int = 1) -> None:
        """Move the bar ``n`` units within a step (a minibatch of an epoch)."""
        self._ticked += n
        self.bar.update(n)

    def _end(self, step: int) -> None:
        self._steps += 1
        self._pending += max(0, self.ticks - self._ticked)
        if self.due(step, self.every):
            self._move(step)
        if self.checkpoint is not None and (
            (step + 1) % self.checkpoint_every == 0 or (self.checkpoint_at_end and step + 1 == self.total)
        ):
            self.checkpoint(step + 1)

    def _move(self, step: int) -> None:
        text = self._text
        if text is None and self.postfix is not None and self.progress and self._steps:
            text = self.postfix(slice(step + 1 - self._steps, step + 1))
        if self._pending or text is not None:
            self.bar.update(self._pending, postfix=text)
        self._text, self._steps, self._pending = None, 0, 0

    def close(self, summary: str | None = None) -> None:
        """Finish the bar (its line off a terminal: ``desc: N units in S s, summary``)."""
        if self._pending or self._text is not None:
            self.bar.update(self._pending, postfix=self._text)
        self.bar.close(summary)


def minimise(loss_at: Callable[[int], torch.Tensor], optimizer: torch.optim.Optimizer, steps: int, *, desc: str,
             progress: bool = False, record_every: int = 100, decay=None) -> list[float]:
    """``steps`` gradient steps of ``optimizer`` on the scalar ``loss_at(step)`` (which draws its own minibatch),
    with the learning rate of ``decay`` (its ``apply(optimizer, step)``; None: constant); the loss is read back
    and checked at step 0, every ``record_every`` steps and at the last, and those values are returned."""
    losses: list[float] = []
    loop = TrainingLoop(desc, steps, progress=progress)
    for step in loop:
        loss = loss_at(step)
        if decay is not None:
            decay.apply(optimizer, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % record_every == 0 or step == steps - 1:
            value = loss.item()
            loop.record(step, postfix=f"loss={value:.4f}", loss=value)
            losses.append(value)
    loop.close(f"loss {losses[-1]:.4f}" if losses else None)
    return losses

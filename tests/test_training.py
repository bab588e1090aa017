"""The training-loop helper: a NaN stops the loop naming its step and loss, every step recorded is checked, the
checkpoint hook runs when told, the bar moves as told and nothing is drawn (nor drawn at random) without progress."""

import math

import numpy as np
import pytest
import torch

from deepprob import training
from deepprob.errors import NAN_HINT, FitDivergedError
from deepprob.training import TrainingLoop, check_finite, check_steps


def run(losses, **options) -> list[int]:
    """The steps a loop over ``losses`` (one a step, recorded every step) got through."""
    done = []
    loop = TrainingLoop("test", len(losses), progress=False, **options)
    for step in loop:
        loop.record(step, loss=losses[step])
        done.append(step)
    loop.close()
    return done


@pytest.mark.parametrize("bad", [0, 3, 9])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_stops_at_its_step_whatever_the_bars_cadence(bad, value):
    losses = [1.0] * 10
    losses[bad] = value
    with pytest.raises(FitDivergedError) as err:
        run(losses, every=4)  # the bar moves every 4 steps; the check is every step
    assert str(err.value) == f"the loss became {value} at step {bad}; {NAN_HINT}"  # the words every fit says
    assert f"at step {bad};" in str(err.value)


def test_finite_losses_run_every_step():
    assert run([0.5] * 7) == list(range(7))
    assert run([0.5] * 7, start=4) == [4, 5, 6]


def test_two_losses_name_the_one_that_diverged():
    loop = TrainingLoop("GAN", 10, progress=False)
    with pytest.raises(FitDivergedError, match=r"^the g_loss became nan at step 6; lower --lr"):
        for step in loop:
            loop.record(step, d_loss=0.7, g_loss=math.nan if step == 6 else 1.2)
    with pytest.raises(FitDivergedError, match="the d_loss became inf at step 2"):
        check_finite(2, d_loss=math.inf, g_loss=math.nan)  # the first named, in order
    check_finite(2, d_loss=0.1, g_loss=-3.0)


def test_check_steps_names_the_first_bad_step_of_a_stretch():
    check_steps(torch.tensor([1.0, 2.0, 3.0]), 10)
    with pytest.raises(FitDivergedError, match="the loss became nan at step 12;"):
        check_steps(torch.tensor([1.0, 2.0, math.nan, math.inf]), 10)
    with pytest.raises(FitDivergedError, match="the elbo became -inf at step 5;"):
        check_steps(np.array([0.0, -math.inf]), 4, name="elbo")


@pytest.mark.parametrize("at_end, expected", [(True, [3, 6, 7]), (False, [3, 6])])
def test_the_checkpoint_hook_runs_every_n_steps_and_at_the_end(at_end, expected):
    calls, seen = [], []

    def save(done):
        calls.append(done)
        seen.append(list(bodies))  # the step's body has run by then

    bodies = []
    loop = TrainingLoop("test", 7, progress=False, checkpoint=save, checkpoint_every=3, checkpoint_at_end=at_end)
    for step in loop:
        bodies.append(step)
    loop.close()
    assert calls == expected
    assert [s[-1] + 1 for s in seen] == expected


def test_the_hook_counts_from_a_resumed_start_and_not_past_a_failed_step():
    calls = []
    loop = TrainingLoop("VAE", 5, start=2, progress=False, checkpoint=calls.append)
    with pytest.raises(FitDivergedError, match="at step 3;"):
        for step in loop:
            loop.record(step, loss=math.nan if step == 3 else 1.0)
    assert calls == [3]  # after step 2 (three done); step 3 diverged: no checkpoint of it


class Recorder:
    """A stand-in for :func:`deepprob.progress.bar`: the updates and the close."""

    def __init__(self, desc, total, unit="step", enabled=True):
        self.args, self.updates, self.closed = (desc, total, unit, enabled), [], None

    def update(self, n=1, postfix=None):
        self.updates.append((n, postfix))

    def close(self, summary=None, seconds=None):
        self.closed = summary


def test_the_bar_moves_every_k_steps_with_the_postfix_given(monkeypatch):
    monkeypatch.setattr(training, "progress_bar", Recorder)
    losses = np.arange(10.0)
    windows = []

    def postfix(window):
        windows.append(window)
        return f"mean {losses[window].mean():g}"

    loop = TrainingLoop("SVI", 10, every=4, postfix=postfix)
    for step in loop:
        loop.record(step, loss=losses[step])
    loop.close("done")
    assert loop.bar.args == ("SVI", 10, "step", True)
    assert loop.bar.updates == [(4, "mean 1.5"), (4, "mean 5.5"), (2, "mean 8.5")]
    assert windows == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert loop.bar.closed == "done"

    loop = TrainingLoop("GAN", 5, every=2, unit="it")
    for step in loop:
        if step == 2:
            loop.record(step, postfix="d_loss=0.7", d_loss=0.7)
    loop.close()
    assert loop.bar.args == ("GAN", 5, "it", True)
    assert loop.bar.updates == [(2, None), (2, "d_loss=0.7"), (1, None)]


def test_epochs_of_minibatches_move_the_bar_within_a_step(monkeypatch):
    monkeypatch.setattr(training, "progress_bar", Recorder)
    loop = TrainingLoop("VAE", 4, start=1, ticks=3)
    for epoch in loop:
        for _ in range(3 if epoch != 2 else 2):  # an epoch that moved less is topped up at its end
            loop.update()
        loop.record(epoch + 1, postfix=f"epoch={epoch + 1}")
    loop.close()
    assert loop.bar.args == ("VAE", 9, "step", True)
    assert loop.bar.updates == [(1, None), (1, None), (1, None), (0, "epoch=2"), (1, None), (1, None),
                                (1, "epoch=3"), (1, None), (1, None), (1, None), (0, "epoch=4")]
    assert sum(n for n, _ in loop.bar.updates) == 9


def test_without_progress_nothing_is_drawn_and_nothing_random(capfd):
    state = torch.get_rng_state()
    called = []
    loop = TrainingLoop("quiet", 50, progress=False, every=5, postfix=lambda window: called.append(window) or "")
    for step in loop:
        loop.update()
        loop.record(step, loss=1.0)
    loop.close("the end")
    assert capfd.readouterr().err == ""
    assert called == []  # the postfix is not even made
    assert torch.equal(torch.get_rng_state(), state)

    loop = TrainingLoop("shown", 50, every=5)  # with progress, off a terminal: the finished line
    for step in loop:
        loop.record(step, loss=1.0)
    loop.close("the end")
    assert capfd.readouterr().err.startswith("shown: 50 steps in ")
    assert torch.equal(torch.get_rng_state(), state)


def test_the_gan_trainer_stops_naming_the_iteration_and_the_loss():
    from deepprob.adversarial import GANConfig, GANTrainer, mlp
    from deepprob.datasets.points import ring

    torch.manual_seed(0)
    trainer = GANTrainer(mlp(2, [8], 2), mlp(2, [8], 1), ring().sample, 2, GANConfig(batch_size=8))
    real_step = trainer.step

    def step():
        d, g = real_step()
        return (d, g * math.nan) if trainer.iteration == 4 else (d, g)

    trainer.step = step
    with pytest.raises(FitDivergedError, match="^the g_loss became nan at step 4;"):
        trainer.train(10, progress=False, check_every=2)
    assert trainer.iteration == 4

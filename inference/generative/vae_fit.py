"""Training a VAE by SVI, epoch by epoch, with exact checkpoint and resume.

This is :func:`~deepprob.inference.fitting.svi.fit_svi` 's style (a torch optimiser over the networks'
parameters and ``Trace_ELBO().differentiable_loss``) arranged in epochs over minibatches, because a
VAE is trained on data that do not fit in one step. Three things keep the loop close to the speed of
a plain PyTorch loop:

- Pyro's validation (argument and support checks of every distribution, shape checks of every site)
  runs once, on the first minibatch, and is off for the training steps: it costs about a tenth of a
  step of a 784-400-20 MLP.
- The loss of each step stays on the device; the losses of an epoch come to the host once, at its
  end, where a NaN is reported with the step it happened at. (``Trace_ELBO`` itself still reads each
  site's log-probability to the host; that is Pyro's, and only matters on a GPU.)
- The data live on the device as one tensor; a minibatch is an index into it, not a DataLoader.

Under ``torchrun --nproc_per_node=K`` (:mod:`deepprob.parallel`) each of the K processes takes a contiguous
block of every global minibatch of ``batch_size`` images, and its encoder and decoder run wrapped in
``DistributedDataParallel`` inside the same Pyro model and guide. The ELBO of a minibatch is a sum over its
images, so the processes' gradients are summed (not averaged); the guide's Normal noise is drawn for the
whole global batch on every process (they share the seed) and each keeps its block's rows. A step is then
the step of one process on the global batch, to float rounding: a run does not depend on K, and a
checkpoint resumes under any K. Only the Pyro engine runs data-parallel.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger

import deepprob.parallel as parallel
from deepprob.datasets.images import binarize
from deepprob.errors import InputError
from deepprob.files import atomic_torch_save
from deepprob.inference.fitting.engines import AUTO_COMPILE_STEPS
from deepprob.inference.fitting.objectives import parse_objective
from deepprob.inference.generative.vae_eval import ImportanceWeightedLoss, evaluate_vae
from deepprob.optim import adam_state, collect_parameters, make_adam
from deepprob.progress import report_once
from deepprob.seeds import rng_untouched
from deepprob.training import TrainingLoop, check_steps

ELBOS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}
VAE_ENGINES = ("pyro", "compiled")


class _BlockOfGlobalNormal(dist.Normal):
    """``Normal(loc, scale)`` of one process's block of rows of a global batch (along ``axis``, counted from
    the right): ``rsample`` draws the standard Normal noise of the whole global batch, as one process
    training on it would, and keeps the block's rows. The density is the Normal's."""

    def __init__(self, loc, scale, block: tuple[int, int, int], validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)
        self.block = block  # (start, global rows, axis)

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, self._get_checked_instance(_BlockOfGlobalNormal, _instance))
        new.block = self.block
        return new

    def rsample(self, sample_shape=()):
        start, total, axis = self.block
        shape = list(self._extended_shape(sample_shape))
        rows, shape[axis] = shape[axis], total
        eps = torch.empty(shape, dtype=self.loc.dtype, device=self.loc.device).normal_().narrow(axis, start, rows)
        return self.loc + eps * self.scale


class _GlobalBatchDraws(Messenger):
    """A handler for a guide whose codes are to be drawn for the global batch: each reparameterised Normal
    site in the plate ``plate`` (this process's rows of ``total``, from ``start``) becomes a
    :class:`_BlockOfGlobalNormal`. It wraps the guide itself (``_GlobalBatchDraws(...)(guide)``), so that it
    acts inside whatever the loss runs the guide in (a particles plate there expands the new distribution
    as it would the old; a ``poutine.block`` there would hide the sites from a handler outside)."""

    def __init__(self, plate: str, start: int, total: int):
        super().__init__()
        self.plate, self.start, self.total = plate, start, total

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None:
            return
        frame = next((f for f in msg["cond_indep_stack"] if f.name == self.plate), None)
        if frame is None:  # not per image (the plate's own subsample site, a global latent): the same draws
            return  # on every process are one process's draws
        base, wrappers = msg["fn"], []
        while isinstance(base, dist.Independent):
            wrappers.append(base.reinterpreted_batch_ndims)
            base = base.base_dist
        if type(base) not in (dist.Normal, torch.distributions.Normal):
            raise NotImplementedError(f"data-parallel VAE training draws the guide's Normal codes of the plate "
                                      f"{self.plate!r}; site {msg['name']!r} is a {type(base).__name__}")
        axis = frame.dim - len(msg["fn"].event_shape)  # the plate's dimension in the Normal's own shape
        new = _BlockOfGlobalNormal(base.loc, base.scale, (self.start, self.total, axis))
        for n in reversed(wrappers):
            new = dist.Independent(new, n)
        msg["fn"] = new


class VAETrainer:
    """SVI for a VAE's ``model`` and ``guide``: Adam on the networks, one epoch at a time.

    Args:
        vae: a :class:`~deepprob.models.vae.VAE` on its device.
        lr: Adam's learning rate (constant, so that more epochs after a resume equal a longer run).
        elbo: ``"trace"`` (Monte Carlo KL, Pyro's ``Trace_ELBO``) or ``"meanfield"`` (analytic KL,
            ``TraceMeanField_ELBO``).
        batch_size: images per step.
        objective: ``"elbo"`` or ``"iwae:K"`` (:class:`~deepprob.inference.generative.vae_eval.ImportanceWeightedLoss`:
            each image's K-code importance-weighted bound; K times the decoder's work a step).
    """

    def __init__(self, vae, *, lr: float = 1e-3, elbo: str = "trace", batch_size: int = 128,
                 engine: str = "pyro", objective: str = "elbo"):
        if elbo not in ELBOS:
            raise InputError(f"--elbo {elbo!r}: expected one of {', '.join(ELBOS)}")
        objective = parse_objective(objective)
        if objective.name == "renyi":
            raise InputError(f"--objective {objective}: the VAE takes elbo or iwae:K")
        if not objective.is_elbo and elbo == "meanfield":
            raise InputError(f"--objective {objective}: not with --elbo meanfield (the analytic KL is the ELBO's)")
        if batch_size < 1:
            raise InputError(f"--batch-size {batch_size}: expected a positive integer")
        if engine not in VAE_ENGINES:
            raise InputError(f"--engine {engine!r}: expected one of {', '.join(VAE_ENGINES)}")
        self.world_size = parallel.world_size()
        if self.world_size > 1:
            if engine == "compiled":
                raise InputError(f"--engine compiled: data-parallel training ({self.world_size} processes under "
                                 "torchrun) runs on --engine pyro (or auto)")
            if type(self)._pyro_step is not VAETrainer._pyro_step:
                raise InputError(f"{type(self).__name__}: data-parallel training (torchrun) is for the VAE's "
                                 "own steps; run it as one process")
            parallel.check_divisible(batch_size)
        self.vae, self.batch_size, self.engine = vae, batch_size, engine
        self.loss = ELBOS[elbo]() if objective.is_elbo else ImportanceWeightedLoss(objective)
        # the networks of the model and the guide (not an AVB's discriminator, which trains apart)
        self.params = collect_parameters(vae.encoder, vae.decoder)
        self.optimizer = make_adam(self.params, lr=lr)
        self.step = 0  # steps taken so far, over all epochs
        self._validated = False
        self._compiled = None
        if engine == "compiled":
            from deepprob.inference.generative.vae_steps import CompiledVAESteps

            self._compiled = CompiledVAESteps(vae, self.params, analytic_kl=elbo == "meanfield",
                                              loss=None if objective.is_elbo else self.loss)
        self._parallel_vae = None
        if self.world_size > 1:
            # the model and guide of a view of the VAE whose networks are the DDP wrappers; the VAE itself
            # (its state_dict, evaluation, figures) keeps its own networks
            self._parallel_vae = parallel.module_view(
                vae, encoder=parallel.data_parallel(vae.encoder, reduce="sum"),
                decoder=parallel.data_parallel(vae.decoder, reduce="sum"))

    @property
    def compile_seconds(self) -> float:
        return self._compiled.compile_seconds if self._compiled is not None else 0.0

    def validate(self, x: torch.Tensor) -> None:
        """One ELBO of ``x`` with all of Pyro's checks on: shapes, supports, model/guide agreement."""
        # on a fork of the RNG: checking must not change the random numbers that training draws
        with rng_untouched(x.device), pyro.validation_enabled(True), torch.no_grad():
            self.loss.differentiable_loss(self.vae.model, self.vae.guide, x)
        self._validated = True

    def train_epoch(self, x: torch.Tensor, order: torch.Tensor, bar: TrainingLoop | None = None) -> float:
        """One pass over the binary images ``x`` (N, *event_shape) in the order ``order`` (N,); ``bar`` (a
        :class:`~deepprob.training.TrainingLoop`, or a progress bar) moves by ``update()`` after each step.

        Returns:
            The mean ELBO per image over the epoch's steps (nats).

        Raises:
            FitDivergedError: a step's loss was NaN or infinite (named by its step number).
        """
        if not self._validated:
            self.validate(x[order[:2]])
        if self._parallel_vae is not None:
            step = lambda index: self._parallel_step(x, index)  # noqa: E731
        elif self.engine == "pyro":
            step = lambda index: self._pyro_step(x[index])  # noqa: E731
        else:  # the optimiser's state tensors, gathered once an epoch: the steps update them in place
            state = self._adam_state()
            step = lambda index: self._compiled(x[index], state)  # noqa: E731
        batches = order.split(self.batch_size)
        losses = torch.empty(len(batches), device=x.device, dtype=x.dtype)
        with pyro.validation_enabled(False):
            for i, index in enumerate(batches):
                losses[i] = step(index)
                if bar is not None:
                    bar.update()
        # the global batches' losses (every process then checks the same numbers); the one host sync
        losses = parallel.all_reduce_sum(losses).cpu()
        check_steps(losses, self.step)
        self.step += len(batches)
        return -float(losses.sum()) / x.shape[0]

    def _pyro_step(self, x: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        value = self.loss.differentiable_loss(self.vae.model, self.vae.guide, x)
        value.backward()
        self.optimizer.step()
        return value.detach()

    def _parallel_step(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """A step on this process's block of the global minibatch ``x[index]``; returns the block's loss."""
        start, rows = parallel.shard_bounds(len(index))
        if rows == 0:  # a last batch smaller than K: a plate cannot be empty, but the step's draws and
            start = 0  # reductions must happen here too; a stand-in row, weighted 0
        vae = self._parallel_vae
        guide = _GlobalBatchDraws("data", start, len(index))(vae.guide)
        self.optimizer.zero_grad(set_to_none=True)
        value = self.loss.differentiable_loss(vae.model, guide, x[index[start:start + max(rows, 1)]])
        if rows == 0:
            value = value * 0
        value.backward()
        self.optimizer.step()
        return value.detach()

    def _adam_state(self) -> list[torch.Tensor]:
        """Parameters, first and second moments and step counters (``torch.optim.Adam``'s own), and the lr."""
        exp_avgs, exp_avg_sqs, steps = adam_state(self.optimizer)
        like = self.params[0]
        lr = torch.tensor(self.optimizer.param_groups[0]["lr"], dtype=like.dtype, device=like.device)
        return [p.detach() for p in self.params] + exp_avgs + exp_avg_sqs + steps + [lr]

    def state_dict(self) -> dict:
        return {"model": self.vae.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.vae.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: str | Path, config: dict, device: torch.device) -> dict:
    """The checkpoint at ``path``, after checking that it was made with the same ``config``.

    Every entry of ``config`` but ``epochs`` must agree (a resumed run may train for more epochs).

    Raises:
        InputError: no checkpoint there, or one made with other options (the message names them).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--resume: no checkpoint at {path} (run once without --resume, with the same --out)")
    state = torch.load(path, map_location=device, weights_only=True)
    saved = state["config"]
    differ = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in config.items() if k != "epochs" and saved.get(k) != v]
    if differ:
        raise InputError(f"--resume: {path} was made with other options: {', '.join(differ)}")
    return state


def fit_vae(
    vae,
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    elbo: str = "trace",
    objective: str = "elbo",
    binarization: str = "dynamic",
    threshold: float = 0.5,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    config: dict | None = None,
    init: dict | None = None,
    progress: bool = True,
    engine: str = "pyro",
    trainer: VAETrainer | None = None,
    desc: str = "VAE",
) -> dict:
    """Train ``vae`` for ``epochs`` epochs on the grey-level images ``train``, checkpointing each epoch.

    Args:
        train: images (N, *event_shape) with values in [0, 1] on the VAE's device; binarised each
            epoch (``binarization="dynamic"``) or once by ``threshold`` (``"fixed"``).
        test: binary test images: their one-sample ELBO is recorded after each epoch.
        checkpoint: a file to write after each epoch (weights, optimiser, epoch, RNG state, history,
            ``config`` and ``init``), atomically, by process 0 alone under torchrun; with ``resume``,
            training continues from it (every process reads it) and ends exactly where an uninterrupted
            run with the same seed ends.
        config: the run's options, saved and, on resume, checked (all but ``epochs`` must agree).
        init: metrics of the untrained VAE, saved so that a resumed run can report them.
        engine: ``"pyro"`` (``Trace_ELBO`` each step), ``"compiled"`` (the same steps compiled, see
            :mod:`deepprob.inference.generative.vae_steps`) or ``"auto"`` (compiled when the run has at least
            ``AUTO_COMPILE_STEPS`` steps to repay the compile; the Pyro engine under torchrun). Epoch times
            exclude compiling, which is reported as ``compile_seconds``.
        trainer: the trainer to run (an :class:`~deepprob.inference.generative.avb_fit.AVBTrainer`, say); by default a
            :class:`VAETrainer` with ``lr``, ``elbo``, ``batch_size``, ``engine`` and ``objective``.
        desc: the progress bar's label.

    Returns:
        ``{"epochs": ..., "history": {"train_elbo": [...], "test_elbo": [...], "seconds": [...]},
        "init": init, "resumed_from": epoch or None, "engine": ..., "compile_seconds": ..., "world_size": K}``,
        ELBOs in nats per image.
    """
    device = train.device
    config = dict(config or {}, epochs=epochs)
    steps_per_epoch = -(-train.shape[0] // batch_size)
    if trainer is None:
        if engine == "auto":
            engine = "compiled" if epochs * steps_per_epoch >= AUTO_COMPILE_STEPS else "pyro"
            if engine == "compiled" and parallel.active():
                engine = "pyro"
                if parallel.is_writer():
                    report_once("--engine auto: the Pyro engine, as data-parallel training (torchrun) runs on it")
        trainer = VAETrainer(vae, lr=lr, elbo=elbo, batch_size=batch_size, engine=engine, objective=objective)
    engine, batch_size = trainer.engine, trainer.batch_size
    steps_per_epoch = -(-train.shape[0] // batch_size)
    history = {"train_elbo": [], "test_elbo": [], "seconds": []}
    start, resumed_from = 0, None
    if resume:
        state = load_checkpoint(checkpoint, config, device)
        trainer.load_state_dict(state["trainer"])
        history, start, init = state["history"], state["epoch"], state["init"]
        _set_rng_state(state["rng"], device)
        resumed_from = start
    writer = parallel.is_writer()  # process 0 of a torchrun, or the only one: writes and shows progress

    def save(epochs_done: int) -> None:  # after each epoch: the state to go on from, and the RNG's
        atomic_torch_save({"epoch": epochs_done, "config": config, "trainer": trainer.state_dict(),
                           "history": history, "init": init, "rng": _rng_state(device)}, checkpoint)

    loop = TrainingLoop(desc, epochs, start=start, progress=progress and writer, ticks=steps_per_epoch,
                        checkpoint=save if checkpoint is not None and writer else None)
    for epoch in loop:
        # the epoch's binary images and order come from the global RNG, whose state the checkpoint keeps
        x = binarize(train, binarization, threshold)
        order = torch.randperm(train.shape[0]).to(device)
        tick, compiling = time.perf_counter(), trainer.compile_seconds
        history["train_elbo"].append(trainer.train_epoch(x, order, loop))
        # train_epoch ends with a host sync; the time spent compiling is not the epoch's
        history["seconds"].append(time.perf_counter() - tick - (trainer.compile_seconds - compiling))
        history["test_elbo"].append(evaluate_vae(vae, test, num_samples=1)["elbo"])
        loop.record(epoch + 1, postfix=f"epoch={epoch + 1}, elbo={history['train_elbo'][-1]:.2f}")
    loop.close(f"elbo {history['train_elbo'][-1]:.2f}" if history["train_elbo"] else None)
    return {"epochs": max(start, epochs), "history": history, "init": init, "resumed_from": resumed_from,
            "engine": engine, "compile_seconds": trainer.compile_seconds, "world_size": trainer.world_size}

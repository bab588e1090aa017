"""Data parallelism over processes: the plumbing of ``torchrun --nproc_per_node=K -m deepprob vae|gan ...``.

torchrun starts K copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in their environment; :func:`init` joins them into one process group (gloo on the CPU,
NCCL on CUDA, each process on ``cuda:LOCAL_RANK``). The trainers then split every global minibatch into K
contiguous blocks, one per process (:func:`shard`), wrap their networks in ``DistributedDataParallel``
(:func:`data_parallel`), and process 0 alone writes (:func:`is_writer`). Every process holds the whole
data set and draws the same random numbers (same seed), so that each one knows the global order of an
epoch and its own block of it without any communication.

Without torchrun's variables (or with ``WORLD_SIZE=1``) nothing here starts: every function answers as for
one process (rank 0 of 1) and hands its argument back unchanged.

Plain torch: no Pyro here.
"""

from __future__ import annotations

import copy
import inspect
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from deepprob.errors import InputError

TIMEOUT = timedelta(minutes=30)  # how long a collective waits for the other processes


def launched_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(value)
    except ValueError:
        raise InputError(f"WORLD_SIZE={value!r}: expected a positive integer (as torchrun sets it)") from None
    if world < 1:
        raise InputError(f"WORLD_SIZE={value!r}: expected a positive integer (as torchrun sets it)")
    return world


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 with one process)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes training together (1 without torchrun)."""
    return dist.get_world_size() if active() else 1


def is_writer() -> bool:
    """Whether this process writes the files, the JSON and the progress bars: rank 0 (the only one, alone)."""
    return rank() == 0


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None or not value.isdigit():
        raise InputError(f"{name}={value!r}: expected torchrun's environment (run under torchrun --nproc_per_node=K)")
    return int(value)


def init(device: str | None) -> torch.device:
    """Join the processes torchrun started (its environment), returning this process's device.

    ``device``: ``"cpu"`` (gloo), ``"cuda"`` (NCCL, process r on ``cuda:LOCAL_RANK``), or ``None``/``"auto"``
    for cuda when every local process has a CUDA device of its own, else the CPU.

    Raises:
        InputError: ``cuda:N`` (the processes take ``cuda:LOCAL_RANK``), fewer CUDA devices than local
            processes, or a broken torchrun environment.
    """
    world, rank_, local = launched_world_size(), _env_int("RANK"), _env_int("LOCAL_RANK")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device in (None, "auto"):
        device = "cuda" if cuda_count >= local_world else "cpu"
    if device.startswith("cuda:"):
        raise InputError(f"--device {device}: under torchrun each process takes cuda:LOCAL_RANK; give --device cuda")
    if device == "cuda":
        if cuda_count < local_world:
            raise InputError(f"--device cuda with {local_world} processes on this machine: it has {cuda_count} CUDA "
                             f"device(s), one per process is needed (lower --nproc_per_node or use --device cpu)")
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
        backend = "nccl"
    elif device == "cpu":
        chosen, backend = torch.device("cpu"), "gloo"
    else:
        raise InputError(f"--device {device!r}: expected 'cpu' or 'cuda' under torchrun")
    if not dist.is_available():
        raise InputError("torchrun: this build of torch has no torch.distributed")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank_, world_size=world, timeout=TIMEOUT)
    return chosen


def shutdown(wait: bool = True) -> None:
    """Leave the process group (after a barrier with ``wait``: every process has finished its collectives)."""
    if dist.is_available() and dist.is_initialized():
        if wait and active():
            dist.barrier()
        dist.destroy_process_group()


# --- sharding ---------------------------------------------------------------------------------------------


def shard_bounds(n: int) -> tuple[int, int]:
    """(start, length) of this process's contiguous block of ``n`` rows: ``torch.tensor_split`` 's blocks, the
    first ``n % K`` processes one row more than the others (some none where ``n < K``)."""
    k, r = world_size(), rank()
    size, extra = divmod(n, k)
    return r * size + min(r, extra), size + (r < extra)


def shard(tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """This process's block of ``tensor`` along ``dim`` (all of it with one process).

    Applied to a global minibatch of indices into the data (the same on every process: the same seed
    draws the same epoch order), each process gets its share of the same global order, as a
    ``DistributedSampler`` would; the blocks are contiguous, so that process r holds rows r*B..(r+1)*B-1
    of the global batch, and random numbers drawn for the global batch are split the same way.
    """
    if not active():
        return tensor
    start, length = shard_bounds(tensor.shape[dim])
    return tensor.narrow(dim, start, length)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the processes, in place (the tensor itself with one process). For reporting:
    a loss summed over the global batch, an epoch's statistics."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def check_divisible(batch_size: int, option: str = "--batch-size") -> int:
    """The per-process batch of the global ``batch_size``; raises InputError unless K divides it."""
    k = world_size()
    if batch_size % k:
        raise InputError(f"{option} {batch_size}: the global batch must be a multiple of the {k} processes "
                         f"(torchrun --nproc_per_node={k}); each process takes an equal share")
    return batch_size // k


# --- networks ---------------------------------------------------------------------------------------------


class _DataParallel(DistributedDataParallel):
    """``DistributedDataParallel`` whose unknown attributes are the wrapped module's (``latent_dim``,
    ``scale``, ...), so that it stands in for the module in the code that calls it."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":  # not there yet (inside DDP's constructor)
                raise
            return getattr(self.module, name)


def _sum_gradients(process_group, bucket):
    """DDP communication hook: the gradients summed over the processes (DDP's own hook averages them)."""
    group = process_group if process_group is not None else dist.group.WORLD
    return dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future().then(lambda f: f.value()[0])


def data_parallel(module: nn.Module, *, reduce: str = "mean") -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` (the module itself with one process).

    The wrapper shares the module's parameters (an optimiser over them stays valid, ``module.state_dict()``
    keeps its keys); call the wrapper in the training steps (its forward readies the gradient reduction)
    and the module itself elsewhere (evaluation, sampling: no collectives).

    Args:
        reduce: how the gradients are combined: ``"mean"`` (DDP's average) for a loss that is a mean over
            the batch, or ``"sum"`` for one that is a sum over the batch (an ELBO): either way the update
            is that of one process on the whole global batch.

    Batch norm layers are made to normalise over the global batch (:func:`global_batch_norms`, in place:
    same parameters, same buffers), so that their statistics, and so the gradients, are those of the
    global batch, and their running statistics agree on every process (no buffers are broadcast).
    """
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce={reduce!r}: expected 'mean' or 'sum'")
    if not active():
        return module
    global_batch_norms(module)
    device = next(module.parameters()).device
    # the buffers agree on every process (batch norm's are global): none broadcast at each forward
    options = inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in options else {"broadcast_buffers": False}
    wrapped = _DataParallel(module, device_ids=[device] if device.type == "cuda" else None, **no_sync)
    if reduce == "sum":
        wrapped.register_comm_hook(None, _sum_gradients)
    return wrapped


def module_view(module: nn.Module, **children: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` whose named children are replaced by ``children`` (``module`` itself is
    untouched; parameters, buffers and other children are shared).

    For code that calls its networks through ``self`` (a Pyro model and guide, ``self.decoder(z)``): the
    view's methods call the wrappers (e.g. :func:`data_parallel`'s), while ``module`` and its
    ``state_dict`` stay as they are.
    """
    view = copy.copy(module)
    view.__dict__["_modules"] = {**module._modules, **children}
    return view


class _AllReduceSum(torch.autograd.Function):
    """A sum over the processes that autograd differentiates: the gradient of a sum over processes is the
    sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GlobalBatchNorm:
    """Batch norm over the global batch of all the processes, on any device (torch's ``SyncBatchNorm`` runs
    on GPUs only, and DDP refuses it on the CPU): the mean and the variance of each channel are sums over
    the processes. In eval mode, or with one process, the plain batch norm of the base class."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_full((1,), x.numel() // x.shape[1])  # the rows are counted: unequal blocks are right too
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return out


class GlobalBatchNorm1d(_GlobalBatchNorm, nn.BatchNorm1d):
    """``BatchNorm1d`` over the global batch (see :func:`global_batch_norms`)."""


class GlobalBatchNorm2d(_GlobalBatchNorm, nn.BatchNorm2d):
    """``BatchNorm2d`` over the global batch (see :func:`global_batch_norms`)."""


class GlobalBatchNorm3d(_GlobalBatchNorm, nn.BatchNorm3d):
    """``BatchNorm3d`` over the global batch (see :func:`global_batch_norms`)."""


_GLOBAL = {nn.BatchNorm1d: GlobalBatchNorm1d, nn.BatchNorm2d: GlobalBatchNorm2d, nn.BatchNorm3d: GlobalBatchNorm3d}


def global_batch_norms(module: nn.Module) -> nn.Module:
    """Make every ``BatchNorm1d/2d/3d`` inside ``module`` normalise over the global batch, in place: each
    becomes its ``GlobalBatchNorm`` subclass (the same object: its parameters, buffers and state_dict
    keys stay). Returns ``module``."""
    for child in module.modules():
        if type(child) in _GLOBAL:
            child.__class__ = _GLOBAL[type(child)]
    return module

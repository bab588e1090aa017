"""Data-parallel training (deepprob.parallel, torch.distributed with gloo on the CPU): two processes take the
steps of one process on the doubled batch (the VAE through its Pyro model and guide, and the DCGAN with batch
norm), only process 0 writes, bad input is one line, and ``torchrun --nproc_per_node=2 -m deepprob vae`` writes
the files of a one-process run.

The processes are forks of the test process (no imports to repeat), joined through torchrun's environment
variables on a free localhost port; the torchrun test launches the real command.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
import torch.multiprocessing as mp

import deepprob.cli as cli
import deepprob.parallel as parallel
from deepprob.adversarial.dcgan import DCDiscriminator, DCGANTrainer, DCGenerator
from deepprob.cli import main as cli_main
from deepprob.datasets.images import binarize
from deepprob.errors import InputError
from deepprob.inference.generative.vae_fit import VAETrainer, fit_vae
from deepprob.models.vae import VAE

# what the commands import, imported here once for the forked processes (each would take seconds)
for _module in ("deepprob.examples.vae", "deepprob.examples.vae_figures", "sklearn.datasets", "torch._dynamo",
                "matplotlib.pyplot"):
    importlib.import_module(_module)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (parallel.dist.is_available() and sys.platform.startswith("linux")),
                                reason="needs torch.distributed and fork")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process(rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    parallel.init("cpu")
    try:
        fn(rank, *args)
    finally:
        parallel.shutdown(wait=False)


def launch(fn, *args, world: int = 2) -> None:
    """``fn(rank, *args)`` in ``world`` forked processes of one gloo process group (raises if one fails)."""
    mp.start_processes(_process, args=(world, free_port(), fn, args), nprocs=world, start_method="fork")


# --- what each process trains (the same code with one process) ----------------------------------------------

N_IMAGES = 97  # three global batches of 32, then one of a single image: process 1's block of it is empty


def images(n: int = N_IMAGES) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def train_vae(objective: str = "elbo", elbo: str = "trace") -> dict:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = images()
    vae = VAE((1, 8, 8), z_dim=2, hidden=[16])
    fit = fit_vae(vae, x, binarize(x[:16], generator=torch.Generator().manual_seed(0)), epochs=2, batch_size=32,
                  lr=1e-2, objective=objective, elbo=elbo, progress=False, engine="pyro")
    return {"params": {k: v.clone() for k, v in vae.state_dict().items()}, "train_elbo": fit["history"]["train_elbo"],
            "world_size": fit["world_size"]}


def train_dcgan() -> dict:
    torch.manual_seed(0)
    generator, discriminator = DCGenerator(4, (1, 8, 8), width=4), DCDiscriminator((1, 8, 8), width=4)
    trainer = DCGANTrainer(generator, discriminator, images(64), batch_size=16, lr=2e-3)
    stats = [trainer.train_epoch() for _ in range(2)]
    return {"params": {**{f"g.{k}": v.clone() for k, v in generator.state_dict().items()},
                       **{f"d.{k}": v.clone() for k, v in discriminator.state_dict().items()}},
            "d_loss": [s["d_loss"] for s in stats]}


def train_all() -> dict:
    return {"vae": train_vae(), "iwae": train_vae("iwae:3"), "dcgan": train_dcgan()}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _train_in_process(rank: int, out: Path) -> None:
    runs = train_all()
    # the check's own check: without the reduction of the gradients (each process on its block alone) the
    # parameters must come out different
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parallel, "data_parallel", lambda module, **_: module)
        runs["unreduced"] = {"vae": train_vae(), "dcgan": train_dcgan()}
    errors = []
    for make in (lambda: VAETrainer(VAE((1, 8, 8), hidden=[8]), engine="compiled"),
                 lambda: VAETrainer(VAE((1, 8, 8), hidden=[8]), batch_size=33),
                 lambda: DCGANTrainer(DCGenerator(4, (1, 8, 8), 4), DCDiscriminator((1, 8, 8), 4), images(64),
                                      batch_size=15)):
        try:
            make()
        except InputError as err:
            errors.append(str(err))
    runs["errors"] = errors
    torch.save(runs, out / f"rank{rank}.pt")


def test_two_processes_take_the_steps_of_one_on_the_doubled_batch(tmp_path):
    launch(_train_in_process, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    alone = train_all()
    assert alone["vae"]["world_size"] == 1 and ranks[0]["vae"]["world_size"] == 2
    for name in ("vae", "iwae", "dcgan"):
        for run in ranks:  # every process ends with the parameters of one process on the global batch
            assert max_difference(run[name]["params"], alone[name]["params"]) < 1e-5, name
        assert max_difference(ranks[0][name]["params"], ranks[1][name]["params"]) == 0, name
    for name in ("vae", "iwae"):
        assert ranks[0][name]["train_elbo"] == pytest.approx(alone[name]["train_elbo"], rel=1e-5)
    assert ranks[0]["dcgan"]["d_loss"] == pytest.approx(alone["dcgan"]["d_loss"], rel=1e-5)
    # the check can fail: without the all-reduce, each process's steps are its half-batch's
    for name in ("vae", "dcgan"):
        assert max_difference(ranks[0]["unreduced"][name]["params"], alone[name]["params"]) > 1e-4, name
        assert max_difference(ranks[0]["unreduced"][name]["params"], ranks[1]["unreduced"][name]["params"]) > 1e-4
    perturbed = dict(alone["vae"]["params"])
    perturbed["decoder.net.0.bias"] = perturbed["decoder.net.0.bias"] + 1e-4
    assert max_difference(perturbed, alone["vae"]["params"]) > 1e-5
    # bad input under DDP names the option
    assert [e.split(":")[0] for e in ranks[0]["errors"]] == ["--engine compiled", "--batch-size 33",
                                                            "--batch-size 15"], ranks[0]["errors"]


# --- the command line ---------------------------------------------------------------------------------------

TINY_VAE = ["vae", "--dataset", "digits", "--epochs", "2", "--train-size", "100", "--test-size", "32",
            "--hidden", "16", "--batch-size", "32", "--iw-samples", "5", "--loglik", "proposal",
            "--loglik-samples", "10", "--threads", "1", "--json"]


def _cli_in_process(rank: int, out: Path, ports: list[int]) -> None:
    """The command in each process, each with a folder of its own (to see who writes), stdout and stderr
    to files; one process group per command (run_example leaves it at the end)."""
    runs = {"train": [*TINY_VAE, "--out", str(out / f"out{rank}")],
            # both processes continue process 0's run from its checkpoint
            "resume": [*TINY_VAE, "--epochs", "3", "--resume", "--quiet", "--out", str(out / "out0")],
            "odd-batch": [*TINY_VAE, "--batch-size", "33", "--out", str(out / f"odd{rank}")],
            "compiled": [*TINY_VAE, "--engine", "compiled", "--out", str(out / f"compiled{rank}")],
            "linreg": ["linreg", "--out", str(out / f"linreg{rank}")]}
    codes = {}
    cli.ERROR_GRACE_SECONDS = 0  # (under torchrun, process 1 would be ended during it: see the torchrun test)
    for (name, argv), port in zip(runs.items(), ports):
        parallel.shutdown(wait=False)  # run_example joins the group itself
        os.environ["MASTER_PORT"] = str(port)
        with open(out / f"{name}{rank}.stdout", "w") as stdout, open(out / f"{name}{rank}.stderr", "w") as stderr, \
                contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            codes[name] = cli_main(argv)
    (out / f"codes{rank}.json").write_text(json.dumps(codes))


def test_only_process_0_writes_and_bad_input_is_one_line(tmp_path):
    launch(_cli_in_process, tmp_path, [free_port() for _ in range(5)])
    for rank in range(2):
        assert json.loads((tmp_path / f"codes{rank}.json").read_text()) == {
            "train": 0, "resume": 0, "odd-batch": 2, "compiled": 2, "linreg": 2}
    written = {p.name for p in (tmp_path / "out0").iterdir()}
    assert {"checkpoint.pt", "samples.png", "reconstructions.png", "learning_curve.png"} <= written
    assert not list((tmp_path / "out1").iterdir())  # process 1 made the folder and wrote nothing in it
    out0, out1 = (tmp_path / "train0.stdout").read_text(), (tmp_path / "train1.stdout").read_text()
    assert json.loads(out0.strip().splitlines()[-1])["world_size"] == 2 and out1 == ""
    resumed = json.loads((tmp_path / "resume0.stdout").read_text().strip().splitlines()[-1])
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs"] == 3 and resumed["world_size"] == 2
    assert torch.load(tmp_path / "out0" / "checkpoint.pt", weights_only=True)["epoch"] == 3
    assert (tmp_path / "resume1.stdout").read_text() == ""
    for name, named in (("odd-batch", "--batch-size 33"), ("compiled", "--engine compiled"),
                        ("linreg", "`deepprob linreg` runs as one process")):
        lines = (tmp_path / f"{name}0.stderr").read_text().strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and lines[0].startswith("deepprob "), lines
        # process 1 says it after a grace in which torchrun would have ended it (process 0 having exited)
        assert (tmp_path / f"{name}1.stderr").read_text().strip() == lines[0].replace(": error", " (process 1): error")


def test_torchrun_writes_the_files_of_one_process(tmp_path, capsys):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "deepprob",
               *TINY_VAE, "--quiet", "--out", str(tmp_path / "two")]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT.parent, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout  # one JSON line: process 0's
    two = json.loads(lines[0])

    assert cli_main([*TINY_VAE, "--quiet", "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert two["world_size"] == 2 and one["world_size"] == 1
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == files
    assert "checkpoint.pt" in files and len(files) >= 6
    for key in ("train_elbo", "test_elbo", "test_iw_loglik"):  # the same training, to float rounding
        assert two[key] == pytest.approx(one[key], rel=1e-5), key
    states = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("one", "two")]
    assert max_difference(states[0]["trainer"]["model"], states[1]["trainer"]["model"]) < 1e-5
    assert states[0]["config"] == states[1]["config"] and states[0]["epoch"] == states[1]["epoch"] == 2

    # bad input: one line (process 0's; torchrun ends process 1 in its grace), status 2 from the process
    bad = subprocess.run([*command, "--batch-size", "33"], capture_output=True, text=True, timeout=300,
                         cwd=ROOT.parent, env=env)
    said = [line for line in bad.stderr.splitlines() if line.startswith("deepprob vae")]  # not "deepprob FAILED"
    assert bad.returncode != 0 and len(said) == 1 and said[0].startswith("deepprob vae: error: --batch-size 33"), \
        bad.stderr[-3000:]
    assert "exitcode  : 2" in bad.stderr

    # a resume of the two-process run by one process ends where the one-process run ended
    assert cli_main([*TINY_VAE, "--quiet", "--epochs", "3", "--out", str(tmp_path / "two"), "--resume"]) == 0
    assert cli_main([*TINY_VAE, "--quiet", "--epochs", "3", "--out", str(tmp_path / "one"), "--resume"]) == 0
    resumed = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:]]
    assert resumed[0]["resumed_from_epoch"] == 2
    assert resumed[0]["train_elbo"] == pytest.approx(resumed[1]["train_elbo"], rel=1e-5)

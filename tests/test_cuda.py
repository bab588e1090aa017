"""--device cuda: data and parameters on the GPU (skipped on machines without one)."""

import json

import pytest
import torch

from deepprob.cli import main
from deepprob.datasets import two_moons
from deepprob.guides import build_guide
from deepprob.inference import fit_svi
from deepprob.models.bnn import BayesianNeuralNetwork

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@needs_cuda
def test_parameters_live_on_the_data_device():
    data = two_moons(n=50).to("cuda")
    model = BayesianNeuralNetwork(2, hidden=3)
    fit = fit_svi(model, build_guide("fullrank", model), data.X, data.y, steps=20, progress=False, elbo_particles=10)
    assert all(p.device.type == "cuda" for p in fit.guide.parameters())


@needs_cuda
@pytest.mark.parametrize("example", ["linreg", "logreg", "bnn"])
def test_examples_run_on_cuda(example, tmp_path, capsys):
    assert main([example, "--device", "cuda", "--steps", "200", "--json", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["device"] == "cuda"


def test_asking_for_cuda_without_one_is_an_input_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["linreg", "--device", "cuda", "--quiet"]) == 2
    assert "--device cuda: no CUDA device is available" in capsys.readouterr().err

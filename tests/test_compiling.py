"""compile_step: the compiled step equals the eager one, and new data of the same shape reuses the compile."""

import torch
from torch._dynamo.utils import counters

from deepprob.compiler.compiling import compile_step
from deepprob.optim import adam_update_


def least_squares_step(X, y):
    """One Adam step on mean squared error, closing over the data (captured as constants by the trace)."""

    def step(w, m, v, t, lr):
        def loss_of(w):
            return ((X @ w - y) ** 2).mean() + 1e-3 * (X.T @ X).diagonal().sum() * w.square().sum()

        grad, value = torch.func.grad_and_value(loss_of)(w)
        adam_update_([w], [grad], [m], [v], t, lr)
        return value

    return step


def run(step, steps=5):
    state = [torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(()), torch.tensor(0.1)]
    losses = [step(*state) for _ in range(steps)]
    return torch.stack([loss.reshape(()) for loss in losses]), state[0]


def test_compiled_step_equals_eager_and_new_data_reuses_the_compile():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=generator)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(40, generator=generator)
    example = [torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(()), torch.tensor(0.1)]
    compiled = compile_step(least_squares_step(X, y), [x.clone() for x in example])
    for got, want in zip(run(compiled), run(least_squares_step(X, y))):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    # other data of the same shape (a new --seed of a synthetic set): Inductor keys large constants by shape
    # and dtype and takes their values from the graph, so its cache serves the compiled code, which must
    # then compute with the new data, not the data it was first compiled with
    X2, y2 = X.flip(0) * 2, y.flip(0) - 1
    hits = counters["inductor"]["fxgraph_cache_hit"]
    compiled2 = compile_step(least_squares_step(X2, y2), [x.clone() for x in example])
    assert counters["inductor"]["fxgraph_cache_hit"] == hits + 1
    for got, want in zip(run(compiled2), run(least_squares_step(X2, y2))):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_one_fake_mode_traces_the_same_graph_as_make_fx(monkeypatch):
    """compiler/tracing.py offers make_fx one FakeTensorMode for its node metadata (torch's private TracingContext):
    the same graph as a plain make_fx, and one mode made where the plain trace makes one per operation. If torch
    stops taking the offer, this fails: the warm compile of every fit would be slower again."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from deepprob.compiler.tracing import trace

    data = torch.randn(50, 3)

    def step(w):
        return torch.sigmoid(data @ w).log().sum(), (w * w).sum().exp()

    made = []
    init = FakeTensorMode.__init__
    monkeypatch.setattr(FakeTensorMode, "__init__", lambda self, *a, **k: (made.append(1), init(self, *a, **k))[1])
    w = torch.randn(3)
    plain = make_fx(step)(w)
    per_operation = len(made)
    made.clear()
    ours = trace(step, [w])
    assert ours.code == plain.code and per_operation > 3 and len(made) == 1
    assert all(torch.equal(a, b) for a, b in zip(ours(w), step(w)))

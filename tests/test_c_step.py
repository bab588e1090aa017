"""The C backend of compiled steps: each supported construct against torch's own result."""

import subprocess

import pytest
import torch

from deepprob.compiler import c_step
from deepprob.compiler.c_step import CStep, Unsupported, compile_c
from deepprob.compiler.compiling import compile_step

pytestmark = pytest.mark.skipif(c_step.c_compiler() is None, reason="the C backend needs Linux x86-64 and cc")


def spd(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g)
    return a @ a.T + n * torch.eye(n)


def lower(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).tril(-1) + torch.diag_embed(1 + torch.rand(shape[:-1], generator=g))


CONSTANT, LOWER, UPPER = spd(3), lower(2, 3, 3), lower(3, 3).T
ROWS = torch.tensor([1, 0, 1, -1])

CASES = {
    # broadcasting over transposed, expanded and sliced inputs; unary maths
    "broadcast": (lambda x, y: ((x.t() * y + 1).exp() - x.t()[1:3].tanh().sum(0)).log1p(),
                  [(3, 4), (3,)]),
    "reductions": (lambda x: (x.sum((0, 2), keepdim=True), x.mean(), x.amax(-1), x.sum()), [(2, 3, 4)]),
    "matmul": (lambda a, b, c: (a @ b, torch.bmm(c, c.transpose(1, 2)), b.T @ a.T), [(3, 5), (5, 2), (2, 3, 4)]),
    "solve_triangular": (lambda b: (torch.linalg.solve_triangular(LOWER, b, upper=False),
                                    torch.linalg.solve_triangular(UPPER, b, upper=True),
                                    torch.linalg.solve_triangular(b[0, :, :1].exp() * UPPER, b, upper=True)),
                         [(2, 3, 2)]),
    "views": (lambda x: (x[:, 1:3].exp(), x[1], x.reshape(-1)[::2], x.unsqueeze(0).expand(2, 3, 4) * 2,
                         x.diagonal(), x.permute(1, 0).contiguous().view(2, 6)), [(3, 4)]),
    # where, comparisons, clamps, powers; a float64 0-dim tensor times float32 computes in float32
    "selection": (lambda x: (torch.where(x > 0, x, 0.5 * x) * torch.tensor(2.0, dtype=torch.float64),
                             (x >= 0.1) & (x < 1.0), x.clamp_min(0.2), x.clamp(-0.5, 0.5), x.abs() ** 2.5,
                             x ** 2, torch.rsqrt(x.abs() + 1), torch.sigmoid(x)), [(5, 3)]),
    "creation": (lambda x: (torch.ones_like(x) + torch.eye(3), torch.zeros(3).fill_(2.0) * x,
                            torch.arange(3.0) + x, torch.full((3, 3), 0.5) - x.tril(), x.triu(1)), [(3, 3)]),
    # constants and expressions of constants (folded once: the Cholesky factor of a captured matrix)
    "constants": (lambda x: torch.linalg.cholesky(CONSTANT) @ x + CONSTANT.sum(), [(3, 2)]),
    # gradients: scatters into diagonals and slices, softplus and tanh backward
    "gradients": (lambda m: torch.func.grad(
        lambda m: (m.diagonal() ** 2).sum() + m.tril(-1).exp().sum() + torch.nn.functional.softplus(m[1, 1:]).sum()
        + m[:, 0].tanh().sum())(m), [(3, 3)]),
    # rows picked by an integer tensor (a mixture's components), and the gradient, which adds up repeated rows
    "indexing": (lambda x: (x[ROWS], torch.func.grad(lambda x: (x[ROWS] ** 2).sum())(x)), [(2, 3)]),
    "normalising": (lambda x: (torch.log_softmax(x, -1), torch.softmax(x, 0), torch.logsumexp(x, -1),
                               torch.func.grad(lambda x: (torch.log_softmax(x, -1) * x).sum()
                                               + (torch.softmax(x, 0) * x).sum())(x)), [(2, 3)]),
    "cholesky": (lambda a: torch.func.grad_and_value(
        lambda a: torch.linalg.cholesky(a @ a.mT + 3 * torch.eye(3)).exp().sum())(a), [(2, 3, 3)]),
    "float64": (lambda x, y: ((x.double() @ y.double()).exp().sum(), (x * 2).to(torch.float64)), [(2, 3), (3, 2)]),
    # joining tensors, and the gradients through a join (slices of it)
    "cat_stack": (lambda x, y: (torch.cat([x, y.T, x * 2], 0), torch.stack([x[:, 0], y[0]], -1),
                                torch.func.grad(lambda x: torch.stack([x, x.exp()], 1).pow(2).sum())(x)),
                  [(2, 3), (3, 2)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operations_match_torch(case):
    fn, shapes = CASES[case]
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randn(*s, generator=g) for s in shapes]
    compiled = compile_c(fn, [x.clone() for x in inputs])
    assert isinstance(compiled, CStep)
    ours, theirs = compiled(*inputs), fn(*inputs)
    assert torch.utils._pytree.tree_structure(ours) == torch.utils._pytree.tree_structure(theirs)
    ours, theirs = torch.utils._pytree.tree_leaves(ours), torch.utils._pytree.tree_leaves(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6, equal_nan=False)


def test_in_place_updates_of_the_inputs_and_new_inputs_each_call():
    """An SGD step on a quadratic: the inputs are updated in place, the loss is returned, and a call reads
    the tensors it is given (fresh ones too, of the examples' layout)."""
    target = torch.tensor([1.0, -2.0, 3.0])

    def step(x, m, noise):
        loss_of = lambda x: ((x - target) ** 2 * noise).sum()  # noqa: E731
        g, loss = torch.func.grad_and_value(loss_of)(x)
        m.copy_(0.9 * m + g)
        x.copy_(x - 0.1 * m)
        return loss

    compiled = compile_c(step, [torch.zeros(3), torch.zeros(3), torch.ones(3)])
    x, m, x2, m2 = torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3)
    for k in range(20):
        noise = torch.full((3,), 1.0 + 0.1 * k)
        torch.testing.assert_close(compiled(x, m, noise), step(x2, m2, noise.clone()))
    torch.testing.assert_close(x, x2)
    torch.testing.assert_close(m, m2)


def test_outputs_and_updates_read_the_inputs_old_values():
    """Functional semantics: a returned view of an input, and updates that read each other, see the values
    the inputs had when the call began."""
    def swap(a, b):
        old_a = a.clone()
        a.copy_(b * 2)
        b.copy_(old_a + 1)
        return old_a, a[0]

    compiled = compile_c(swap, [torch.zeros(3), torch.zeros(3)])
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])
    old_a, first = compiled(a, b)
    torch.testing.assert_close(old_a, torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(first, torch.tensor(20.0))
    torch.testing.assert_close(a, torch.tensor([20.0, 40.0, 60.0]))
    torch.testing.assert_close(b, torch.tensor([2.0, 3.0, 4.0]))


def test_unsupported_operations_raise_and_auto_compiles_them_with_inductor():
    def fn(a):  # a cumulative sum: not in the C backend
        return torch.cumsum(a, 0).sin()

    a = torch.randn(3, 3)
    with pytest.raises(Unsupported, match="cumsum"):
        compile_c(fn, [a])
    with pytest.raises(Unsupported, match="rounding_mode"):  # a variant of a supported operation
        compile_c(lambda a: torch.div(a, 0.3, rounding_mode="floor"), [a])
    auto = compile_step(fn, [a], backend="auto")
    assert not isinstance(auto, CStep)
    torch.testing.assert_close(auto(a), fn(a))


def test_the_compiled_library_is_cached_and_written_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    fn = lambda x: (x * 3.0 + 1.5).exp()  # noqa: E731
    compile_c(fn, [torch.zeros(4)])
    libraries = list((tmp_path / "deepprob-c").glob("step-*.so"))
    assert len(libraries) == 1 and not list((tmp_path / "deepprob-c").glob("tmp*"))  # no temporary left

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")
    monkeypatch.setattr(subprocess, "run", no_compiler)
    x = torch.randn(4)
    torch.testing.assert_close(compile_c(fn, [torch.zeros(4)])(x), fn(x))


def test_without_a_compiler_the_backend_declines(monkeypatch):
    monkeypatch.setattr(c_step, "c_compiler", lambda: None)
    with pytest.raises(Unsupported, match="compiler"):
        compile_c(lambda x: x + 1, [torch.zeros(2)])
    with pytest.raises(ValueError, match="backend 'gcc'"):
        compile_step(lambda x: x + 1, [torch.zeros(2)], backend="gcc")

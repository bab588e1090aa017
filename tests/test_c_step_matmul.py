"""The C step's matrix products (each loop order against torch, and the order each shape and layout gets),
its guards on dense linear algebra and on memory, and its fused passes over a data set."""

import re

import pytest
import torch
from torch.func import functionalize
from torch.fx.experimental.proxy_tensor import make_fx

from deepprob.compiler import c_step
from deepprob.compiler.c_step import CStep, Generator, Ref, Unsupported, compile_c, matmul_plan

pytestmark = pytest.mark.skipif(c_step.c_compiler() is None, reason="the C backend needs Linux x86-64 and cc")


def tensor(shape, layout, dtype, generator):
    """A tensor of ``shape`` laid out ``"row"`` (contiguous), ``"col"`` (its last two dimensions swapped in
    memory: a transposed contiguous tensor) or ``"strided"`` (every other element of a wider one, along
    the last dimension)."""
    if layout == "row":
        return torch.randn(shape, generator=generator, dtype=dtype)
    if layout == "col":
        return torch.randn(*shape[:-2], shape[-1], shape[-2], generator=generator, dtype=dtype).transpose(-1, -2)
    wide = torch.randn(*shape[:-1], 2 * shape[-1], generator=generator, dtype=dtype)
    return wide[..., ::2]


# a @ b: shapes, layouts, and the loop order (matmul_plan) they are meant to get
PRODUCTS = {
    "inline": ((7, 5), (5, 300), "row", "row", ("inline", False)),  # short k: a sum of products written out
    "inline_batched": ((1, 3, 4), (2, 4, 6), "row", "col", ("inline", False)),  # a batch of 1 broadcasts
    "inline_strided": ((6, 9), (9, 40), "strided", "strided", ("inline", False)),
    "sums": ((1, 500), (500, 3), "row", "col", ("sums", False)),  # a few outputs, long contiguous k
    "sums_two_rows": ((2, 300), (300, 8), "row", "col", ("sums", False)),
    "k_outer": ((1, 2000), (2000, 11), "row", "row", ("k_outer", False)),  # X^T g of a row-major X
    "k_outer_transposed": ((20, 300), (300, 20), "col", "col", ("k_outer", True)),
    "k_outer_strided": ((3, 200), (200, 30), "strided", "strided", ("k_outer", False)),
    "dot": ((40, 100), (100, 50), "row", "col", ("dot", False)),  # rows of a, columns of b contiguous
    "dot_batched": ((3, 20, 100), (3, 100, 60), "row", "col", ("dot", False)),
    "axpy": ((40, 100), (100, 50), "row", "row", ("axpy", False)),  # rows of b contiguous
    "axpy_transposed": ((40, 100), (100, 50), "col", "col", ("axpy", True)),  # columns of a contiguous
    "axpy_batched": ((1, 40, 100), (3, 100, 50), "row", "row", ("axpy", False)),
    "dot_strided": ((30, 70), (70, 40), "strided", "strided", ("dot", False)),  # nothing contiguous
}


def ref(t: torch.Tensor) -> Ref:
    return Ref("x", t.dtype, tuple(t.shape), tuple(t.stride()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(PRODUCTS))
def test_matrix_products_take_their_loop_order_and_match_torch(case, dtype, monkeypatch):
    a_shape, b_shape, a_layout, b_layout, expected = PRODUCTS[case]
    g = torch.Generator().manual_seed(0)
    a, b = tensor(a_shape, a_layout, dtype, g), tensor(b_shape, b_layout, dtype, g)
    batch = a.dim() == 3
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    assert matmul_plan(ref(a), ref(b), M, N, K, batch) == expected
    plans = []
    monkeypatch.setattr(c_step, "matmul_plan", lambda *args: plans.append(matmul_plan(*args)) or plans[-1])
    fn = (lambda a, b: torch.bmm(a.expand(b.shape[0], -1, -1), b)) if batch else (lambda a, b: a @ b)
    compiled = compile_c(fn, [a, b])
    assert plans == [expected]  # the generator used that order
    exact = fn(a.double(), b.double())
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    # sums in double: within float rounding of the exact product (torch's float32 BLAS sums in float)
    torch.testing.assert_close(compiled(a, b), exact.to(dtype), **tolerance)
    torch.testing.assert_close(compiled(a, b), fn(a, b), rtol=1e-4, atol=1e-4)
    # fresh values in the same layout; a NaN and an inf times 0 spread as in torch
    a2 = torch.empty_strided(a.shape, a.stride(), dtype=dtype).copy_(a * 2)
    b2 = torch.empty_strided(b.shape, b.stride(), dtype=dtype).copy_(b)
    a2[..., 0, 0], b2[..., -1, -1], a2[..., -1, -1] = float("nan"), float("inf"), 0.0
    ours, theirs = compiled(a2, b2), fn(a2, b2)
    assert torch.equal(ours.isnan(), theirs.isnan())
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4, equal_nan=True)


def test_large_dense_linear_algebra_is_left_to_blas_and_thin_products_are_not():
    g = torch.Generator().manual_seed(0)
    square = torch.randn(320, 320, generator=g)
    with pytest.raises(Unsupported, match="BLAS"):
        compile_c(lambda a, b: a @ b, [square, square])
    with pytest.raises(Unsupported, match="Cholesky"):
        compile_c(lambda a: torch.linalg.cholesky(a), [torch.eye(400)])
    lower = torch.randn(600, 600).tril() + 600 * torch.eye(600)
    with pytest.raises(Unsupported, match="triangular solve"):
        compile_c(lambda b: torch.linalg.solve_triangular(lower, b, upper=False), [torch.randn(600, 200)])
    # as much work with a thin dimension: a data set's design matrix times a few weights, and its gradient
    X, w = torch.randn(50_000, 40, generator=g), torch.randn(40, 8, generator=g)
    compiled = compile_c(lambda X, w: (X @ w, X.T @ (X @ w)), [X, w])
    for ours, theirs in zip(compiled(X, w), (X.double() @ w.double(), X.T.double() @ (X.double() @ w.double()))):
        torch.testing.assert_close(ours, theirs.float(), rtol=1e-4, atol=1e-3)


def test_intermediates_beyond_the_memory_limit_are_left_to_inductor(monkeypatch):
    x, w = torch.randn(64, 64), torch.randn(64, 64)
    monkeypatch.setattr(c_step, "MAX_BUFFER_BYTES", 12 << 10)
    # x.exp() and the product live in memory (the product is not a loop over them): 2 x 16 KiB
    with pytest.raises(Unsupported, match="intermediates of 0.03 MiB in memory"):
        compile_c(lambda x, w: x.exp() @ w, [x, w])
    # as many intermediates, all fused into one loop: none in memory
    compiled = compile_c(lambda x: ((x * 2).exp() + 1).log().sin().sum(), [x])
    torch.testing.assert_close(compiled(x), ((x * 2).exp() + 1).log().sin().sum())


def test_a_step_over_a_million_elements_compiles_to_c():
    """What the former limit of 4 million elements sent to Inductor: a chain of elementwise operations over
    a million elements, fused into one loop."""
    x = torch.rand(1_000_000) + 0.5
    fn = lambda x: (((x * 2).exp() + 1).log() * x.sqrt() - x.tanh()).sum()  # noqa: E731
    compiled = compile_c(fn, [x])
    assert isinstance(compiled, CStep)
    torch.testing.assert_close(compiled(x), fn(x.double()).float(), rtol=1e-6, atol=0)


def logistic_step(X, y, L):
    """An SGD-with-momentum step of logistic regression with a Gaussian prior (its Cholesky factor L): the
    forward product X w, the loss, the prior's triangular solve, the gradient X^T g, in-place updates."""
    def loss_of(w):
        nll = torch.nn.functional.binary_cross_entropy_with_logits(w @ X.T, y, reduction="sum")
        z = torch.linalg.solve_triangular(L, w.unsqueeze(-1), upper=False)
        return nll + 0.5 * (z ** 2).sum()

    def step(w, m, lr):
        g, loss = torch.func.grad_and_value(loss_of)(w)
        m.copy_(0.9 * m + g)
        w.copy_(w - lr * m)
        return loss
    return step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_step_over_a_data_set_is_one_pass_over_the_data(dtype):
    """The forward pass, the loss and the gradient over N rows: one loop over the rows (the scalar that
    starts the backward pass, and the prior's solve, run apart from it), no intermediate of N elements in
    memory, the data passed once (X and X^T one copy, rows innermost); and the same steps as eager torch."""
    N, D = 5000, 6
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, D, generator=g, dtype=dtype)
    y = torch.bernoulli(torch.sigmoid(X @ torch.randn(D, generator=g, dtype=dtype)), generator=g)
    L = torch.eye(D, dtype=dtype) + 0.1 * torch.randn(D, D, generator=g, dtype=dtype).tril(-1)
    step = logistic_step(X, y, L)
    state = [torch.zeros(D, dtype=dtype), torch.zeros(D, dtype=dtype), torch.tensor(1e-4, dtype=dtype)]

    gm = make_fx(functionalize(step, remove="mutations_and_views"))(*[s.clone() for s in state])
    gen = Generator(gm, state)
    gen.generate()
    source = gen.source()
    # in strips: the loss's vector maths, then the gradient's sums (LoopGroup.emit_in_strips)
    assert len(re.findall(rf"for \(int64_t (i0|s) = 0; \1 < {N};", source)) == 1
    assert f"for (int64_t s = 0; s < {N}; s += {c_step.STRIP})" in source
    sizes = [int(n) for n in re.findall(r"^static [a-z ]+ b\d+\[(\d+)\]", source, flags=re.M)]
    assert sizes and max(sizes) < N
    data = [c for c in gen.constants if c.numel() == N * D]
    assert len(data) == 1 and data[0].shape == (D, N)  # X^T's layout: each feature's column contiguous

    compiled = compile_c(step, [s.clone() for s in state])
    ours, eager = [s.clone() for s in state], [s.clone() for s in state]
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    for _ in range(5):
        torch.testing.assert_close(compiled(*ours), step(*eager), **tolerance)
    torch.testing.assert_close(ours[0], eager[0], **tolerance)
    torch.testing.assert_close(ours[1], eager[1], **tolerance)


def test_a_data_set_whose_rows_are_picked_keeps_its_rows_contiguous():
    """A minibatch of rows (an index input): the data stays row-major (each row one read), the picked rows
    are laid out for the loops over them; results and gradients as torch's."""
    N, D, B = 4000, 5, 256
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, D, generator=g)

    def step(w, rows):
        return torch.func.grad_and_value(lambda w: torch.nn.functional.softplus(X[rows] @ w).sum())(w)

    w, rows = torch.randn(D, generator=g), torch.randint(-N, N, (B,), generator=g)
    gm = make_fx(functionalize(step, remove="mutations_and_views"))(w, rows)
    gen = Generator(gm, [w, rows])
    gen.generate()
    gen.source()
    assert [tuple(c.shape) for c in gen.constants if c.numel() == N * D] == [(N, D)]
    compiled = compile_c(step, [w, rows])
    for ours, theirs in zip(compiled(w, rows), step(w, rows)):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)

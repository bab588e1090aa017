"""The tabular data layer: CSV parsing, validation, and the errors a user sees."""

import pytest
import torch

from deepprob.datasets import Table, check_binary, cubic_regression, load_csv, two_classes
from deepprob.errors import InputError
from deepprob.models.linreg import expand_basis


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_numeric_columns_become_features(tmp_path):
    path = write(tmp_path, "name,a,b,y\nx,1,2,3\nz,4,5.5,6\n")
    table = load_csv(path, "y", ["a", "b"])
    assert table.feature_names == ["a", "b"]
    assert torch.equal(table.X, torch.tensor([[1.0, 2.0], [4.0, 5.5]]))
    assert torch.equal(table.y, torch.tensor([3.0, 6.0]))
    assert load_csv(path, "y", ["b"]).X.shape == (2, 1)
    assert load_csv(write(tmp_path, "a,b,y\n1,2,3\n4,5.5,6\n", "numbers.csv"), "y").feature_names == ["a", "b"]


def test_a_text_column_is_an_error_not_dropped(tmp_path):
    """A column of names is not silently left out of the features: the error names it, its first value and line,
    and the --features that would leave it out."""
    path = write(tmp_path, "name,a,b,y\nx,1,2,3\nz,4,5.5,6\n")
    with pytest.raises(InputError, match=r"non-numeric value 'x' in column 'name' at line 2; .*--features a,b"):
        load_csv(path, "y")


@pytest.mark.parametrize("text, target, features, message", [
    ("a,y\n1,2\n,3\n", "y", None, "--data .*: a missing value in column 'a' at line 3"),
    ("a,y\n1,2\n3,abc\n", "y", None, "--data .*: non-numeric value 'abc' in column 'y' at line 3"),
    ("a,y\n1,2\n", "price", None, "--target 'price': no such column .* \\(columns: a, y\\)"),
    ("a,y\n1,2\n", "y", ["b"], "--features 'b': no such column"),
    ("a,y\n1,2\n3\n", "y", None, "line 3 has 1 fields, the header has 2"),
    ("a,y\n", "y", None, "expected a header row and at least one data row"),
    ("a,y\n1,nan\n", "y", None, "non-numeric value 'nan' in column 'y'"),
])
def test_csv_errors_name_the_problem(tmp_path, text, target, features, message):
    with pytest.raises(InputError, match=message):
        load_csv(write(tmp_path, text), target, features)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_csv(tmp_path / "absent.csv", "y")


def test_table_rejects_bad_shapes_and_values():
    with pytest.raises(InputError, match="y: expected shape \\(3,\\)"):
        Table(torch.zeros(3, 2), torch.zeros(4), ["a", "b"])
    with pytest.raises(InputError, match="X: expected finite numbers, found inf at index \\(1, 0\\)"):
        Table(torch.tensor([[0.0], [float("inf")]]), torch.zeros(2), ["a"])


def test_binary_labels():
    check_binary("labels", torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="expected binary labels 0/1, found \\[2.0\\]"):
        check_binary("--target label", torch.tensor([0.0, 2.0]))


def test_embedded_data_are_reproducible_and_as_described():
    a, b = cubic_regression(seed=3), cubic_regression(seed=3)
    assert torch.equal(a.X, b.X) and a.X.shape == (40, 1)
    assert a.X.min() >= -3 and a.X.max() <= 5
    resid = a.y - (0.1 * a.X[:, 0] ** 3 - 3 * a.X[:, 0] + 2)
    assert 0.15 < resid.std() < 0.45  # noise sd 0.3
    c = two_classes()
    assert c.X.shape == (2000, 2) and set(c.y.tolist()) == {0.0, 1.0}


def test_basis_expansion():
    Phi, names = expand_basis(torch.tensor([[2.0]]), "poly:3")
    assert torch.equal(Phi, torch.tensor([[1.0, 2.0, 4.0, 8.0]])) and names == ["intercept", "x", "x^2", "x^3"]
    Phi, names = expand_basis(torch.tensor([[2.0, 3.0]]), "identity")
    assert torch.equal(Phi, torch.tensor([[1.0, 2.0, 3.0]]))
    for bad in ["poly:0", "poly", "cubic"]:
        with pytest.raises(InputError, match="--basis"):
            expand_basis(torch.zeros(1, 1), bad)

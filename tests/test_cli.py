"""The command-line contract: subcommands, --json, own CSV data, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

from deepprob.cli import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def csv(tmp_path):
    def write(text):
        path = tmp_path / "data.csv"
        path.write_text(text)
        return str(path)
    return write


def test_linreg_json_contract(tmp_path, capsys):
    code, out, _ = run(["linreg", "--guide", "laplace", "--steps", "3000", "--json", "--quiet", "--out", str(tmp_path)],
                       capsys)
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert {"example", "guide", "seconds", "device", "kl_to_exact", "elbo", "log_evidence"} <= set(metrics)
    assert metrics["example"] == "linreg" and metrics["guide"] == "laplace" and metrics["device"] == "cpu"
    assert metrics["kl_to_exact"] <= 0.01
    assert metrics["elbo"] <= metrics["log_evidence"] + 0.01  # the ELBO bounds log p(y)
    assert (tmp_path / "linreg_fit.png").stat().st_size > 0


def test_linreg_on_a_users_csv(tmp_path, csv, capsys):
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{2 * (i % 7) - (i * 3) % 5 + 0.1 * (i % 3)}" for i in range(30))
    path = csv("a,b,y\n" + rows + "\n")
    code, out, _ = run(["linreg", "--data", path, "--target", "y", "--guide", "laplace", "--json", "--quiet",
                        "--out", str(tmp_path)], capsys)
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["weights"] == ["intercept", "x0", "x1"] and metrics["basis"] == "identity"
    assert metrics["kl_to_exact"] <= 0.01
    assert abs(metrics["exact_mean"][1] - 2) < 0.1 and abs(metrics["exact_mean"][2] + 1) < 0.1


@pytest.mark.parametrize("argv, message", [
    (["linreg", "--data", "{csv_missing}", "--target", "y"], "a missing value in column 'a' at line 3"),
    (["linreg", "--data", "{csv_text}", "--target", "y"], "non-numeric value 'oops' in column 'y' at line 2"),
    (["linreg", "--data", "{csv_ok}", "--target", "price"], "--target 'price': no such column"),
    (["logreg", "--data", "{csv_ok}", "--target", "y"], "--target y: expected binary labels 0/1"),
    (["linreg", "--data", "/nonexistent/file.csv", "--target", "y"], "--data /nonexistent/file.csv: no such file"),
    (["logreg", "--far-point", "1,2,3"], "--far-point '1,2,3': expected 2 numbers"),
    (["bnn", "--task", "regression", "--noise", "-1"], "--noise '-1': expected 'learned' or a noise sd > 0"),
])
def test_bad_input_is_one_clear_line(argv, message, csv, capsys, tmp_path):
    files = {"csv_missing": "a,y\n1,2\n,3\n", "csv_text": "a,y\n1,oops\n", "csv_ok": "a,y\n1,2\n2,3\n"}
    argv = [a.format(**{k: csv(v) if "{" + k + "}" == a else "" for k, v in files.items()}) if a.startswith("{")
            else a for a in argv]
    code, out, err = run(argv + ["--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"deepprob {argv[0]}: error: ") and message in lines[0], lines[0]


@pytest.mark.parametrize("argv, message", [
    (["linreg", "--steps", "0"], "argument --steps: expected a positive integer, got 0"),
    (["linreg", "--lr", "nan"], "argument --lr: expected a finite number > 0, got nan"),
    (["linreg", "--alpha", "0"], "argument --alpha: expected a finite number > 0, got 0"),
    (["bnn", "--hidden", "0"], "argument --hidden: expected a positive integer, got 0"),
    (["linreg", "--guide", "fullrnak"], "argument --guide: unknown guide 'fullrnak'; expected one of laplace"),
    (["bnn", "--guide", "nope"], "argument --guide: unknown guide 'nope'"),
])
def test_bad_numbers_and_names_are_rejected_by_the_parser(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"deepprob {argv[0]}: error: {message}")
    assert line.endswith(f"(see deepprob {argv[0]} --help)")


def test_console_script_help_and_error():
    help_text = subprocess.run([sys.executable, "-m", "deepprob", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0
    for name in ["linreg", "logreg", "bnn"]:
        assert name in help_text.stdout
    bad = subprocess.run([sys.executable, "-m", "deepprob", "linreg", "--guide", "x", "--quiet"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "deepprob linreg: error: argument --guide: unknown guide 'x'; expected one of laplace, meanfield, fullrank, "
        "lowrank, mixture, delta, flow, iaf, pathfinder, svgd, auto (see deepprob linreg --help)"]


def test_guide_auto_from_the_shell(tmp_path, capsys):
    """--guide auto in a single-model command: the ladder's choice and verdict in the report and in --json; auto as
    a row of compare's, with the family it chose; the trust checks' options refused with one line where bad."""
    code, out, _ = run(["linreg", "--guide", "auto", "--json", "--quiet", "--out", str(tmp_path)], capsys)
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["guide"] == "auto" and metrics["auto"]["family"] == "laplace"  # the posterior is Gaussian: exact
    assert metrics["auto"]["trust"] == "yes" and metrics["kl_to_exact"] <= 0.01
    code, out, _ = run(["compare", "linreg", "--guides", "auto,meanfield", "--reference", "exact", "--steps", "2000",
                        "--restarts", "2", "--jobs", "1", "--json", "--quiet", "--out", str(tmp_path)], capsys)
    assert code == 0
    rows = json.loads(out.strip().splitlines()[-1])["guides"]
    assert rows["auto"]["family"] == "laplace" and rows["auto"]["trust"] == "yes"
    for row in rows.values():
        assert {"trust", "trust_reason", "mean_err_est", "sd_err_est", "mean_err_sd"} <= set(row)
    assert rows["auto"]["restart_spread"] < 0.1 and "restart_spread" in rows["meanfield"]
    for argv, message in [(["--restarts", "-1"], "--restarts"), (["--vsbc", "3"], "--vsbc 3")]:
        code, _, err = run(["compare", "linreg", "--guides", "fullrank", "--reference", "none", "--quiet",
                            "--out", str(tmp_path), *argv], capsys)
        assert code == 2 and message in err and "Traceback" not in err

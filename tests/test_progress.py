"""Progress of long work: bars on a terminal (also for fits in worker processes), a line per finished piece
elsewhere, nothing with --quiet."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPARE = ["-m", "deepprob", "compare", "--model", str(ROOT / "examples" / "eight_schools.py") + ":model", "--data",
           str(ROOT / "examples" / "eight_schools.json"), "--guides", "meanfield,fullrank", "--steps", "2500",
           "--chains", "2", "--warmup", "150", "--samples", "150", "--no-extend", "--draws", "200"]


def on_a_terminal(argv: list[str], timeout: float = 300.0) -> tuple[int, str]:
    """Run ``python argv`` with a pseudo-terminal of 120 columns as its stdin, stdout and stderr: (status, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, *argv], stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                               cwd=ROOT.parent, env={**os.environ, "MPLBACKEND": "Agg"})
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
        elif process.poll() is not None:
            break
    process.wait(timeout=10)
    os.close(master)
    return process.returncode, out.decode(errors="replace")


def test_compare_shows_its_fits_and_nuts_on_a_terminal_also_from_workers(tmp_path):
    status, out = on_a_terminal([*COMPARE, "--jobs", "2", "--out", str(tmp_path)])
    assert status == 0, out[-2000:]
    # bars being drawn (a percentage and a rate) for the guides' steps and NUTS's warmup and draws, each drawn
    # in the parent from a worker's reports, and a line as each piece finishes
    for piece in ("compare eight_schools/meanfield:", "compare eight_schools/fullrank:",
                  "compare eight_schools/reference NUTS: chain 1/2 warmup", "compare eight_schools/reference NUTS: "
                  "chain 2/2 draws"):
        assert piece in out, piece
    assert "%|" in out and "step/s" in out and "draw/s" in out
    assert "compare eight_schools/meanfield: 2500 steps in" in out
    assert "guide" in out and "reference (nuts)" in out  # then the table


@pytest.mark.parametrize("quiet", [False, True])
def test_off_a_terminal_a_line_per_finished_piece_or_nothing(quiet, tmp_path):
    done = subprocess.run([sys.executable, *COMPARE, "--jobs", "2", "--out", str(tmp_path)]
                          + (["--quiet"] if quiet else []), capture_output=True, text=True, timeout=300,
                          cwd=ROOT.parent, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "%|" not in done.stderr  # no bars in a log
    lines = [line for line in done.stderr.splitlines() if line.startswith("compare eight_schools/")]
    if quiet:
        assert lines == []
    else:
        assert len(lines) == 2 + 2 * 2, lines  # two fits, two chains' warmup and draws
        assert any(line.startswith("compare eight_schools/fullrank: 2500 steps in") for line in lines)



def test_off_a_terminal_a_long_piece_says_how_far_it_is(capsys, monkeypatch):
    """A run of an hour in a log file is not silent for an hour: a line at most every LOG_SECONDS."""
    from deepprob import progress

    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)
    bar = progress.bar("gan grid", total=400, unit="iteration")
    bar.update(100, postfix="d 1.38")
    bar.update(100)
    bar.update(200)  # done: only the finished line
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("gan grid: 100/400 iterations (25%) in ") and lines[0].endswith(" s left, d 1.38")
    assert lines[1].startswith("gan grid: 200/400 iterations (50%) in ")
    assert lines[2].startswith("gan grid: 400 iterations in ")
    monkeypatch.setattr(progress, "LOG_SECONDS", 3600.0)
    quiet = progress.bar("gan grid", total=400, unit="iteration")
    quiet.update(100)
    assert capsys.readouterr().err == ""


def test_a_workers_piece_is_timed_where_it_ran(capsys):
    """The parent may read a worker's events late (busy with a piece of its own): the line gives the seconds the
    worker measured, not the gap between the events' arrival."""
    from deepprob import progress

    with progress.listening(print) as listener:  # leaving it waits until every event put before is drawn
        listener.queue.put(("open", (1, 0), "compare m/meanfield", 100, "step"))
        listener.queue.put(("update", (1, 0), 100, None))
        listener.queue.put(("close", (1, 0), "elbo -3.1", 12.5))
    assert capsys.readouterr().err == "compare m/meanfield: 100 steps in 12.5 s, elbo -3.1\n"

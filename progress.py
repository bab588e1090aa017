"""Progress of long work, on stderr: bars on a terminal, a line per finished piece elsewhere, from worker
processes too.

    bar = progress.bar("compare eight_schools/meanfield", total=10000)
    for step in range(10000):
        ...
        bar.update(1, postfix="elbo -31.6")
    bar.close("ELBO -31.57")  # its line: "compare eight_schools/meanfield: 10000 steps in 3.1 s, ELBO -31.57"

Where a bar is drawn is settled per process:

- in a worker of :func:`deepprob.pool.map_forked` whose parent listens (:func:`listening`), its events go to
  the parent, which draws them with bars of its own (and, itself a worker, passes them on);
- on a terminal (stderr is a tty): a tqdm bar per running piece, and a line as each one finishes;
- elsewhere (a log file, a pipe, CI): a line every :data:`LOG_SECONDS` while a piece runs (how far, how
  long, about how long left), and the line as it finishes.

``enabled=False`` (``--quiet``) gives a bar that draws nothing.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable

UPDATE_SECONDS = 0.2  # a worker sends a bar's progress at most this often
LOG_SECONDS = 60.0  # off a terminal, a running piece's line at most this often

_channel = None  # in a worker of map_forked whose parent listens: the queue to it
_ids = itertools.count()


class Bar:
    """One piece of work's progress: ``update(n, postfix)``, ``describe(text)`` (a new phase, NUTS's warmup then
    its sampling, say), ``close(summary)``."""

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        pass

    def describe(self, desc: str) -> None:
        pass

    def close(self, summary: str | None = None, seconds: float | None = None) -> None:
        pass


class _Drawn(Bar):
    """A bar of this process: tqdm on a terminal, and the finished line either way."""

    _slots: set[int] = set()  # tqdm positions of the bars open now (several at once when workers report)
    _lock = threading.Lock()

    def __init__(self, desc: str, total: int, unit: str):
        self.desc, self.total, self.unit, self.done, self.start = desc, total, unit, 0, time.perf_counter()
        self.postfix, self.tqdm, self.logged = None, None, self.start
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            with self._lock:
                self.slot = min(set(range(len(self._slots) + 1)) - self._slots)
                self._slots.add(self.slot)
            self.tqdm = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, position=self.slot,
                             file=sys.stderr)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.done += n
        if postfix is not None:
            self.postfix = postfix
        if self.tqdm is not None:
            if postfix is not None:
                self.tqdm.set_postfix_str(postfix, refresh=False)
            self.tqdm.update(n)
            return
        now = time.perf_counter()
        if 0 < self.done < self.total and now - self.logged >= LOG_SECONDS:
            self.logged, elapsed = now, now - self.start
            left = elapsed * (self.total - self.done) / self.done
            line = (f"{self.desc}: {self.done}/{self.total} {self.unit}s ({100 * self.done / self.total:.0f}%) in "
                    f"{elapsed:.0f} s, about {left:.0f} s left")
            print(line + (f", {self.postfix}" if self.postfix else ""), file=sys.stderr, flush=True)

    def describe(self, desc: str) -> None:
        self.desc = desc
        if self.tqdm is not None:
            self.tqdm.set_description(desc)

    def close(self, summary: str | None = None, seconds: float | None = None) -> None:
        """``seconds``: the piece's own time, where it ran elsewhere (a worker's, measured there: the parent may
        read its events late)."""
        seconds = time.perf_counter() - self.start if seconds is None else seconds
        line = f"{self.desc}: {self.done} {self.unit}s in {seconds:.1f} s" + (f", {summary}" if summary else "")
        if self.tqdm is None:
            print(line, file=sys.stderr, flush=True)
            return
        self.tqdm.close()
        with self._lock:
            self._slots.discard(self.slot)
        self.tqdm.write(line, file=sys.stderr)  # above the bars still running
        self.tqdm = None


class _Forwarded(Bar):
    """A bar of a worker process: its events go to the parent (at most every :data:`UPDATE_SECONDS`)."""

    def __init__(self, desc: str, total: int, unit: str):
        self.id, self.pending, self.postfix, self.sent = (os.getpid(), next(_ids)), 0, None, time.perf_counter()
        self.start = self.sent
        _channel.put(("open", self.id, desc, total, unit))

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.pending += n
        self.postfix = postfix if postfix is not None else self.postfix
        if time.perf_counter() - self.sent >= UPDATE_SECONDS:
            self._flush()

    def _flush(self) -> None:
        _channel.put(("update", self.id, self.pending, self.postfix))
        self.pending, self.sent = 0, time.perf_counter()

    def describe(self, desc: str) -> None:
        self._flush()
        _channel.put(("describe", self.id, desc))

    def close(self, summary: str | None = None, seconds: float | None = None) -> None:
        self._flush()
        seconds = time.perf_counter() - self.start if seconds is None else seconds
        _channel.put(("close", self.id, summary, seconds))


def bar(desc: str, total: int, unit: str = "step", enabled: bool = True) -> Bar:
    """A progress bar for ``total`` ``unit``s of work described by ``desc`` (see the module's doc)."""
    if not enabled:
        return Bar()
    if _channel is not None:
        return _Forwarded(desc, total, unit)
    return _Drawn(desc, total, unit)


class listening:
    """In a parent of forked workers: a queue their bars report to (inherited by the fork, see
    :func:`in_worker`), and a thread that draws what arrives with this process's own bars and passes the workers'
    notices to ``say``. A context manager."""

    def __init__(self, say: Callable[[str], object]):
        import multiprocessing

        self.say = say
        self.queue = multiprocessing.get_context("fork").SimpleQueue()
        self.bars: dict = {}
        self.thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> listening:
        self.thread.start()
        return self

    def _listen(self) -> None:
        while True:
            event = self.queue.get()
            kind, key = event[0], event[1] if len(event) > 1 else None
            if kind == "stop":
                return
            if kind == "open":
                self.bars[key] = bar(*event[2:])
            elif key in self.bars:
                target = self.bars[key]
                if kind == "update":
                    target.update(event[2], event[3])
                elif kind == "describe":
                    target.describe(event[2])
                elif kind == "close":
                    self.bars.pop(key).close(event[2], event[3])
            if kind == "say":  # a worker's notice (progress.report_once), said here once
                self.say(event[1])

    def __exit__(self, *exc) -> None:
        self.queue.put(("stop",))
        self.thread.join(timeout=5)
        for open_bar in self.bars.values():  # a worker that died mid-piece
            open_bar.close("stopped")
        self.bars.clear()


def say_in_parent(message: str) -> bool:
    """In a worker whose parent listens: send it ``message`` to say (True); elsewhere False."""
    if _channel is None:
        return False
    _channel.put(("say", message))
    return True


def in_worker(listener: listening | None) -> None:
    """In a forked worker: send this process's bars to ``listener``'s queue (None: draw nothing of its own beyond
    the finished lines, as before)."""
    global _channel
    _channel = None if listener is None else listener.queue


_reported: set[str] = set()


def report_once(message: str) -> str:
    """Print ``deepprob: message`` on stderr the first time this process says it (in a worker of
    :func:`~deepprob.pool.map_forked`, the parent says it, once); returns ``message``.

    For what a user should know but that is not an error: a fall-back to a slower engine, say.
    """
    if message not in _reported:
        _reported.add(message)
        if not say_in_parent(message):
            print(f"deepprob: {message}", file=sys.stderr, flush=True)
    return message

"""The engines that run SVI steps, by name (light: the command line's choices come from here).

- ``pyro``: Pyro's ``Trace_ELBO`` traces the model and guide every step;
- ``compiled``: the same estimator and Adam, the whole step compiled (:mod:`deepprob.inference.compiled`);
- ``auto``: compiled for fits of at least :data:`AUTO_COMPILE_STEPS` steps, where the model and guide allow.
"""

from deepprob.errors import InputError

ENGINES = ("auto", "pyro", "compiled")

# fits at least this long take the compiled engine by themselves (its compile costs about a second)
AUTO_COMPILE_STEPS = 2000


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")


def will_compile(engine: str, steps: int) -> bool:
    """Whether ``engine`` compiles a fit of ``steps`` steps where the model and guide allow it."""
    return engine == "compiled" or (engine == "auto" and steps >= AUTO_COMPILE_STEPS)

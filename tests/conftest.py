import pyro
import pytest

from deepprob.devices import cpu_threads


@pytest.fixture(autouse=True)
def _fresh_pyro():
    """Every test starts from a seeded RNG and an empty param store, with one torch thread (as the CLI
    defaults to: the models are small, and a second thread stalls when other jobs share the cores)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with cpu_threads(1):
        yield

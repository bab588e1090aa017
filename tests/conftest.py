import pyro
import pytest


@pytest.fixture(autouse=True)
def _fresh_pyro():
    """Every test starts from a seeded RNG and an empty param store."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield

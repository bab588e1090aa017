"""Pyro translations of posteriordb's Stan models, one module per Stan model, named as posteriordb names it.

Each module has ``model(data)``: the Stan program's priors (flat, ``ImproperUniform`` on the declared
support, where it declares none), its likelihood, its transformed data computed the same way, and every
parameter the reference draws name recorded (transformed parameters as ``pyro.deterministic``). ``data``
is posteriordb's data object (numbers as Python numbers, arrays as float tensors). Where the reference
draws name other parameters than the model samples (eight schools' ``theta``, not its ``theta_trans``),
``reference_latents(params, data)`` gives the model's latent sites from them.

``tests/test_posteriordb.py`` checks every translation against its reference draws: the score of the
posterior has mean zero under it.
"""

# posteriordb's model name -> the module of its translation
TRANSLATIONS = {
    "arK": "deepprob.models.posteriordb.arK",
    "blr": "deepprob.models.posteriordb.blr",
    "diamonds": "deepprob.models.posteriordb.diamonds",
    "eight_schools_noncentered": "deepprob.models.posteriordb.eight_schools_noncentered",
    "garch11": "deepprob.models.posteriordb.garch11",
    "gp_pois_regr": "deepprob.models.posteriordb.gp_pois_regr",
    "kidscore_momiq": "deepprob.models.posteriordb.kidscore_momiq",
    "kilpisjarvi": "deepprob.models.posteriordb.kilpisjarvi",
    "logearn_interaction": "deepprob.models.posteriordb.logearn_interaction",
    "logmesquite": "deepprob.models.posteriordb.logmesquite",
    "low_dim_gauss_mix": "deepprob.models.posteriordb.low_dim_gauss_mix",
    "nes": "deepprob.models.posteriordb.nes",
}


def translation(model_name: str):
    """The module translating posteriordb's model ``model_name`` (``model``, maybe ``reference_latents``)."""
    import importlib

    from deepprob.errors import InputError

    if model_name not in TRANSLATIONS:
        raise InputError(f"posteriordb's model {model_name!r} has no Pyro translation here; translated: "
                         f"{', '.join(TRANSLATIONS)}")
    return importlib.import_module(TRANSLATIONS[model_name])

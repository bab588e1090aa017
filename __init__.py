"""deepprob: deep probabilistic methods with Pyro and PyTorch.

The path from conjugate Bayesian regression to deep generative models:

- ``deepprob.datasets``: the shared data layer (synthetic sets, CSV tables, digits, MNIST).
- ``deepprob.models``: Pyro models (the generative stories).
- ``deepprob.guides``: variational families, selected by name from one registry.
- ``deepprob.inference``: ``fit_svi``, exact posteriors, divergences and diagnostics.
- ``deepprob.adversarial``: plain torch modules (discriminators, GANs).
- ``deepprob.examples``: one ``main(args)`` per ``deepprob <example>`` subcommand.
"""

__version__ = "0.1.0"

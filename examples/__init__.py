"""The ``deepprob <example>`` subcommands: one module each, registered here.

Each module defines ``add_arguments(parser)`` (its own options; the shared ones come from
:mod:`deepprob.examples.options`) and ``main(args) -> dict`` (runs the example, saves figures under
``args.out`` and returns the run's metrics, which ``--json`` prints).
"""

# name -> (module, one-line description). Adding an example = one module + one line here.
EXAMPLES = {
    "tour": ("deepprob.examples.tour", "The whole story: every example in order, as one HTML report"),
    "linreg": ("deepprob.examples.linreg", "Bayesian linear regression: exact conjugate posterior vs a guide"),
    "logreg": ("deepprob.examples.logreg", "Bayesian logistic regression: Laplace and ELBO guides"),
    "bnn": ("deepprob.examples.bnn", "Bayesian neural network (2 tanh layers), classification or regression"),
    "compare": ("deepprob.examples.compare", "Every guide and a reference posterior (exact/NUTS) side by side"),
    "vae": ("deepprob.examples.vae", "Variational autoencoder: Pyro model and amortised guide, toy to MNIST"),
    "kl": ("deepprob.examples.kl", "Forward vs reverse KL: one Gaussian fitted to a bimodal mixture"),
    "ratio": ("deepprob.examples.ratio", "A classifier against a uniform reference recovers a density ratio"),
    "gan": ("deepprob.examples.gan", "GANs: mode dropping on 2-D rings and its remedies; DCGAN on digits"),
}

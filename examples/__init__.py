"""The ``deepprob <example>`` subcommands: one module each, registered here.

Each module defines ``main(args) -> dict`` (runs the example, saves figures under ``args.out`` and returns
the run's metrics, which ``--json`` prints); its options are defined in :mod:`deepprob.examples.options`
(light, so that ``--help`` needs no heavy import) and its module docstring is its ``--help`` text.
"""

# name -> (module, one-line description, its options in deepprob.examples.options).
# Adding an example = one module, its options, one line here.
EXAMPLES = {
    "tour": ("deepprob.examples.tour", "The whole story: every example in order, as one HTML report",
             "tour_arguments"),
    "linreg": ("deepprob.examples.linreg", "Bayesian linear regression: exact conjugate posterior vs a guide",
               "regression_arguments:linreg"),
    "logreg": ("deepprob.examples.logreg", "Bayesian logistic regression: Laplace and ELBO guides",
               "regression_arguments:logreg"),
    "bnn": ("deepprob.examples.bnn", "Bayesian neural network (2 tanh layers), classification or regression",
            "regression_arguments:bnn"),
    "compare": ("deepprob.examples.compare", "Every guide against a reference posterior, for your own Pyro model "
                "(--model) or a built-in one", "add_compare_model_arguments"),
    "scoreboard": ("deepprob.examples.scoreboard", "Every guide on every posterior of posteriordb, against its "
                   "gold-standard draws", "scoreboard_arguments"),
    "vae": ("deepprob.examples.vae", "Variational autoencoder: Pyro model and amortised guide, toy to MNIST",
            "vae_arguments"),
    "avb": ("deepprob.examples.avb", "Adversarial variational Bayes: an implicit encoder and a discriminator "
            "for its density ratio", "avb_arguments"),
    "kl": ("deepprob.examples.kl", "Forward vs reverse KL: one Gaussian fitted to a bimodal mixture", "kl_arguments"),
    "ratio": ("deepprob.examples.ratio", "A classifier against a uniform reference recovers a density ratio",
              "ratio_arguments"),
    "gan": ("deepprob.examples.gan", "GANs: mode dropping on 2-D rings and its remedies; DCGAN on digits",
            "gan_arguments"),
    "unify": ("deepprob.examples.unify", "GAN against VAE on the same 2-D mixtures: mode seeking against mass "
              "covering, measured", "unify_arguments"),
}

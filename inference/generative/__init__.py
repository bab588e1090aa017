"""Deep generative models' training and evaluation (the models are in :mod:`deepprob.models`).

- the VAE: :mod:`.vae_fit` (SVI epoch by epoch, checkpoints), :mod:`.vae_steps` (its compiled steps),
  :mod:`.vae_eval` (test ELBO, importance-weighted log p(x)), :mod:`.point_vae` (a VAE on 2-D points);
- adversarial variational Bayes: :mod:`.avb_fit`.
"""

"""How good an approximate posterior is.

- :mod:`.compare` (``deepprob.compare``) and its figures (:mod:`.compare_figures`);
- reference posteriors: :mod:`.references` (exact, given draws), :mod:`.nuts`, :mod:`.posteriors` (posteriordb's
  problems), :mod:`.exact` (the conjugate regression's exact posterior);
- draws put back through the model (:mod:`.draws`), as ArviZ data (:mod:`.arviz_data`);
- measures: :mod:`.diagnostics` (errors, W2, k-hat), :mod:`.kl`, :mod:`.divergences` (KL's two directions),
  :mod:`.score_identity`;
- :mod:`.scoreboard` (every guide on every posteriordb posterior) and its figure.
"""

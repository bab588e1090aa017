"""``delta``: q(z) = delta(u - u*), a point mass at the MAP point of the unconstrained latent vector.

A baseline: its draws are all the MAP point, so their sds are 0 (an sd error of 1 reference sd) and their
importance weights p / q are 0 almost everywhere (a point mass has no density): k-hat is infinite.
"""

from pyro.infer.autoguide import AutoLaplaceApproximation

from deepprob.guides.protocol import Draw, Family, PureForm
from deepprob.guides.start import StartsAtLaplace


class PointMassDraw(PureForm):
    """A point mass at ``loc`` (in unconstrained space): one particle, no noise."""

    stochastic = False

    def noise(self, params, num_particles):
        return ()

    def draw(self, params, noise):
        z = params["loc"].unsqueeze(0)
        return Draw(z, z.new_zeros(1))


class PointMass(AutoLaplaceApproximation, Family):
    """Pyro's ``AutoLaplaceApproximation`` without its Laplace step: the MAP point itself."""

    q_density = "point mass"

    def pure_form(self):
        return PointMassDraw(self)


class PointMassAtMode(StartsAtLaplace, PointMass):
    """Starts at the mode L-BFGS found (SVI then has nothing left to do but polish it)."""

    seeks_the_mode = True

    def start_from(self, start):
        self.loc.copy_(start.loc)
        self.step_scales = {"loc": start.sds}


def build(model, options):
    family = PointMassAtMode if options.start == "laplace" else PointMass
    return family(model, **options.loc_kwargs())

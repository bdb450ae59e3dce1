"""Numeric checks of part 4 ("The mathematics"): every formula of those chapters, computed.

* ``attention``: sequence probability, attention written from its formula, heads, positions (4.1, 4.2);
* ``gan``: the optimal discriminator, the Jensen-Shannon divergence and the two generator losses (4.3);
* ``vae``: the exact ELBO of a linear-Gaussian latent model, and the general Gaussian KL (4.4).

The diffusion mathematics of 4.5 is checked with :mod:`aigc_course.studies.diffusion_internals`.
"""

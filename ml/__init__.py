"""HARPS 1D spectra: readers, synthetic archive, and the learned latent layer.

Importing the package is cheap and needs only numpy: the DaCHS server
imports :mod:`ml.harps` and :mod:`ml.fitsio`.  Modules that need torch
(model, training, encoding) are imported explicitly by their users.
"""

__version__ = "0.1.0"

"""The learned latent layer: preprocessing, model, training, encoding, analysis.

Importing the package is cheap; modules that need torch (model, training,
encoding) are imported explicitly by their users.  The HARPS facts and FITS
readers it uses are in :mod:`harps_data` (shared with the service); the
service never imports this package.
"""

__version__ = "0.1.0"

"""The HARPS data layer, shared by the service and the learned layer.

``harps``: instrument, grid and archive facts (the one place for them);
``fitsheader``: the fast FITS header scanner; ``fitsio``: the ADP/s1d reader
and validator; ``records``: the typed model description and analysis
summary that the learned layer writes and the service reads.

Torch-free and cheap to import (numpy only): DaCHS imports it from the
deployed resource directory (``res/``), the venv through its ``.pth``.
"""

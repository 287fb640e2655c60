"""What runs inside DaCHS for the HARPS resource, and the operator commands.

Imported by ``q.rd`` (grammars ``rows``, ``manifest``, ``latentrows``,
``modelrows``; the datalink steps in ``datalink`` with the embargo rule in
``access`` and the spectra in ``spectra``; ``params``, ``webfixes``,
``hardening``, ``latent_udf``, ``rdcode``) and run by the operator
(``ingest``/``archive``: harps-ingest; ``latents``/``modelcard``:
harps-latents).  It never imports ``ml`` (torch): the learned layer runs in
the venv as subprocesses.  ``etc/dachsctl deploy`` puts ``resdir/res`` on the
system Python path of the DaCHS server.
"""

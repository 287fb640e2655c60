"""Service-side helpers of the HARPS resource directory (imported by q.rd).

``rows``: the DaCHS grammar mapping file headers to table rows;
``access``: the embargo gate for data paths; ``spectra``: SDM rows, original
files and previews.  ``etc/dachsctl deploy`` puts this directory on the
system Python path of the DaCHS server.
"""

"""Reports a person can open: ``report.html`` (self-contained, works offline) and PNGs beside
``report.json``, for ``kms-chaos`` and ``kms-load`` runs.

* :mod:`.data`: what a run recorded, as plot-ready series (every call's start, latency,
  operation and outcome; fault windows; per-node state and replication lag where sampled).
  Cheap to import: the load workers record into it.
* :mod:`.plots`: the figures (matplotlib, drawn to PNG files).
* :mod:`.html`: the page that embeds them with the verdict and results tables
  (``write_report``).
"""

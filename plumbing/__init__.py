"""Process plumbing that the servers (``hsm_node``, ``kms_frontend``) and the tools
(``cluster_tools``, the operator CLIs) share, kept once instead of in diverging copies.

No domain rules live here, and nothing here imports ``protos``, ``hsm_node``,
``kms_frontend`` or ``cluster_tools``: the servers still share no domain code but the
``.proto`` contract (docs: DESIGN.md, decision 1).

* ``files``      durable private files: temp file, fsync, atomic rename, fsync of the directory
* ``logs``       structured logs, one JSON object per line on stderr
* ``metrics``    the Prometheus ``/metrics`` HTTP server on a thread of its own
* ``addresses``  ``host:port`` parsing, strict, with the errors an operator can act on
* ``tls``        the certificate a TLS server presents, unverified (trust on first use, discovery)
* ``drain``      admission gate for a graceful stop, and a server process's run-until-signalled life
* ``options``    the flags each server takes for the above (``--metrics-listen``, ``--shutdown-grace``, ``--log-level``)
* ``envfile``    ``KEY=VALUE`` environment files under the real environment (the CLIs' defaults)
* ``argv``       command-line rewriting the CLIs share
"""

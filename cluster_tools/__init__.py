"""What runs the whole cluster from outside, as an operator or a client would: none of it runs
inside ``hsm-node`` or ``kms-frontend``, and neither server imports it.

* ``launcher``  ``kms-cluster``: the local cluster as real processes (start, provision, status, stop)
* ``traffic/``  load against the frontend: where the cluster is (``target``), the KMS calls
                (``clients``), the load driver (``driver``), latency statistics (``stats``) and the
                workload flags ``kms-load`` and ``kms-chaos`` share (``options``)
* ``history``   the record of a run, one JSON object per operation or fault
* ``load``      ``kms-load``: traffic and a report
* ``chaos/``    ``kms-chaos``: traffic while faults break nodes, then the verdict
"""

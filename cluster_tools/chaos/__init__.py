"""``kms-chaos``: break HSM nodes of the local or the compose cluster while load runs, then
check that nothing acknowledged was lost.

Like etcd's robustness suite (failpoint, traffic, model, validate), the pieces are kept apart;
the traffic is :mod:`cluster_tools.traffic` and the record of the run :mod:`cluster_tools.history`:

* ``injectors`` what a fault does to a node: local processes (signals, ``launcher.Cluster``) or
               compose containers (docker kill / pause / restart), hsm-mgmt for remove / add
* ``faults``   when faults happen (a schedule or a seeded random plan), node states, the safety rule
* ``verify``   the reads after the run: decrypt every acknowledged ciphertext, use every key,
               poll the nodes' consistency hashes
* ``checker``  the model of correct behaviour and the verdict, a pure function of the history
* ``cli``      the ``kms-chaos`` command
"""

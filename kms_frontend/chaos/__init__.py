"""Load and chaos tooling for the local and the compose cluster.

Like etcd's robustness suite, the pieces are kept apart:

* ``target``   where the cluster is (endpoints, credentials, store id), from flags or its state
* ``clients``  the KMS calls over gRPC or the AWS JSON endpoint (boto3), errors by AWS name
* ``stats``    latency histograms (mergeable across processes) and the results table
* ``traffic``  the load driver shared by ``kms-load`` and ``kms-chaos`` (closed and open loop)
* ``history``  every operation and fault, with times, inputs and results, as JSON lines
* ``injectors`` what a fault does to a node: local processes (signals, ``launcher.Cluster``) or
               compose containers (docker kill / pause / restart), hsm-mgmt for remove / add
* ``faults``   when faults happen (a schedule or a seeded random plan), node states, the safety rule
* ``verify``   the reads after the run: decrypt every acknowledged ciphertext, use every key,
               poll the nodes' consistency hashes
* ``checker``  the model of correct behaviour and the verdict, a pure function of the history
* ``load``, ``cli``  the ``kms-load`` and ``kms-chaos`` commands
"""

"""Load against the KMS frontend, shared by ``kms-load`` and ``kms-chaos``:

* ``target``   where the cluster is (endpoints, credentials, store id), from flags or the launcher's state
* ``clients``  the KMS calls over gRPC or the AWS JSON endpoint (boto3), errors by AWS name
* ``driver``   the load driver (closed and open loop, several worker processes)
* ``stats``    latency histograms (mergeable across processes) and the results table
* ``options``  the workload flags and their checks
"""

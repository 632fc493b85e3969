"""``hsm-mgmt``, the operator's command line for HSM nodes (CloudHSM's CMU/KMU command names).

It runs in the operator's process, never in ``hsm-node``: the node server imports nothing
from here. ``provision`` holds the operator steps that ``hsm-mgmt``, ``kms-cluster`` and the
tests share (trust anchor, initialise, activate).
"""

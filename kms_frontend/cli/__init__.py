"""``kms``, the ``aws kms`` command line for this frontend, over its gRPC API.

It runs in the caller's process, never in ``kms-frontend``: the server imports nothing
from here.
"""

"""The gRPC metadata half of the ``hsm.v1`` contract (hand-written; the messages are generated
from hsm.proto). Both sides import these names, so they cannot drift apart."""

ERROR_KEY = "x-hsm-error"
"""Trailing metadata of a refused call: the node's rule error (``InsufficientReplicas``,
``StorageFull``, ``NotFound`` ...), so refusals that share a status code can be told apart."""

REPLICAS_KEY = "x-hsm-replicas"
"""Trailing metadata of an ``InsufficientReplicas`` refusal: how many nodes held the write
before it was taken back."""

KEY_LIMIT_KEY = "x-hsm-key-limit"
"""Trailing metadata of a ``KeyLimitExceeded`` refusal: the cluster's limit of keys (CloudHSM's
"maximum keys per cluster"); the other nodes hold the same keys, so no other node is asked."""

DRAINING_KEY = "x-hsm-draining"
"""Trailing metadata (value ``"1"``) of a CryptoStream a node ended because it is stopping: its
sessions end with it."""

REQUEST_ID_KEY = "x-request-id"
"""Request metadata: the id of the frontend request a call belongs to (for the node's log)."""

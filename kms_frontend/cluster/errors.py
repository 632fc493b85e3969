"""What can go wrong when the frontend asks a store's HSMs for something, in the service
layer's terms. The typed client (:mod:`.hsm_client`) turns gRPC status codes and node answers
into these; nothing above ``cluster/`` reads a gRPC status."""
from __future__ import annotations


class HsmClientError(Exception):
    """Base of every error the typed HSM client raises."""


class NoHsmAvailable(HsmClientError):
    """No HSM node of the store's cluster could take the call: down, unreachable, paused, or no
    kmsuser session open on it."""


class HsmStorageFull(HsmClientError):
    """Every node that could take a change answered that its storage is full."""


class TooFewReplicas(HsmClientError):
    """A new key could not be confirmed on as many HSMs as required (it was taken back)."""

    def __init__(self, confirmed: int, needed: int, detail: str = "") -> None:
        super().__init__(detail or f"{confirmed} of {needed} HSMs confirmed")
        self.confirmed, self.needed = confirmed, needed


class KeyLimitReached(HsmClientError):
    """The cluster holds as many keys as it may (CloudHSM's "maximum keys per cluster")."""

    def __init__(self, limit: int, detail: str = "") -> None:
        super().__init__(detail or f"the cluster holds its maximum of {limit} keys")
        self.limit = limit


class BackingKeyMissing(HsmClientError):
    """Every node that answered said it does not hold the key handle."""


class BadCiphertext(HsmClientError):
    """The HSM refused to decrypt: the ciphertext or its additional data was changed."""


class KmsuserLoggedIn(HsmClientError):
    """The HSM refused a kmsuser password change because kmsuser is logged in elsewhere."""


class InvalidCredentials(HsmClientError):
    """The HSM refused the kmsuser password."""


class KmsuserLockedOut(HsmClientError):
    """The HSM refused the login because kmsuser is locked out."""


class HsmCallFailed(HsmClientError):
    """Any other refusal or failure; ``network`` tells a node that did not answer (in time)
    from one that answered with an error."""

    def __init__(self, message: str, *, network: bool = False) -> None:
        super().__init__(message)
        self.network = network

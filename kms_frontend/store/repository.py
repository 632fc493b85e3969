"""The frontend metadata repository: records, errors, and the interface the service layer uses.

Methods are synchronous and each is one durable transaction: when a method returns, its write
is on disk. The service calls them through a single-thread executor. Timestamps are int
milliseconds since the Unix epoch, supplied by the caller (the repository never reads a clock).

Updates of stores and keys are optimistic: a record carries ``version``; ``update_*`` writes
only if the stored version still equals it (else :class:`StaleRecordError`) and returns the
record with the new version. Read, ``dataclasses.replace``, update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


# ---------------------------------------------------------------- state names (AWS's spelling)


class ConnectionState(StrEnum):
    """A custom key store's ConnectionState (the AWS KMS API reference, ConnectionStateType)."""

    CONNECTED = "CONNECTED"
    CONNECTING = "CONNECTING"
    DISCONNECTED = "DISCONNECTED"
    DISCONNECTING = "DISCONNECTING"
    FAILED = "FAILED"


class KeyState(StrEnum):
    """A KMS key's KeyState, as far as keys in a CloudHSM key store have them ("Key states of
    AWS KMS keys" in the AWS KMS Developer Guide)."""

    CREATING = "Creating"
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"
    UNAVAILABLE = "Unavailable"


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class CustomKeyStoreRecord:
    custom_key_store_id: str
    custom_key_store_name: str
    cloud_hsm_cluster_id: str
    trust_anchor_certificate: str  # PEM
    creation_date: int  # ms since epoch
    sealed_password: bytes = field(repr=False)  # kmsuser password, sealed by the caller
    connection_state: str = ConnectionState.DISCONNECTED
    connection_error_code: str | None = None
    custom_key_store_type: str = "AWS_CLOUDHSM"
    # the next kmsuser password, sealed, written before the HSM password is changed (rotation)
    pending_sealed_password: bytes | None = field(default=None, repr=False)
    cluster_certificate_fingerprint: str | None = None  # hex SHA-256 of the cluster certificate
    version: int = 0


@dataclass(frozen=True, slots=True)  # one per key in the frontend's memory: no per-instance __dict__
class KeyRecord:
    key_id: str
    arn: str
    custom_key_store_id: str
    cloud_hsm_cluster_id: str
    creation_date: int
    policy: str
    key_state: str = KeyState.ENABLED
    desired_state: str | None = None  # for Unavailable keys: the KeyState to return to on reconnect
    description: str = ""
    deletion_date: int | None = None
    backing_key_handle: int | None = None  # uint64 HSM key handle; None while Creating
    tags: dict[str, str] = field(default_factory=dict)  # insertion-ordered
    key_usage: str = "ENCRYPT_DECRYPT"
    key_spec: str = "SYMMETRIC_DEFAULT"
    origin: str = "AWS_CLOUDHSM"
    version: int = 0


@dataclass(frozen=True)
class AliasRecord:
    alias_name: str
    key_id: str
    creation_date: int
    last_updated_date: int


@dataclass(frozen=True)
class GrantRecord:
    """A grant on a KMS key ("Grants in AWS KMS"). ``constraint_type`` is None or
    ``EncryptionContextEquals`` / ``EncryptionContextSubset`` with its pairs in
    ``constraint_context``. ``token_nonce`` is what the grant's tokens are made from."""

    grant_id: str
    key_id: str
    grantee_principal: str
    operations: tuple[str, ...]
    issuing_account: str  # arn:aws:iam::ACCOUNT:root
    creation_date: int
    name: str = ""
    retiring_principal: str | None = None
    constraint_type: str | None = None
    constraint_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEvent:
    """An append-only audit entry, e.g. ``event="DeleteBackingKey"``, ``details={"keyHandle": 7,
    "deletionStatus": "FAILURE"}``. ``event_id`` is assigned on append. ``principal`` is the ARN
    of the caller (None for what the frontend does by itself, such as deleting a key whose
    waiting period ended)."""

    timestamp: int
    event: str
    key_id: str | None = None
    custom_key_store_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    event_id: int | None = None
    principal: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_marker: str | None = None

    @property
    def truncated(self) -> bool:
        return self.next_marker is not None


# ---------------------------------------------------------------- errors


class RepositoryError(Exception):
    """Base of everything the repository raises on purpose."""


class NotFoundError(RepositoryError):
    def __init__(self, entity: str, ident: str) -> None:
        super().__init__(f"{entity} {ident!r} not found")
        self.entity = entity
        self.ident = ident


class AlreadyExistsError(RepositoryError):
    """A uniqueness constraint: ``what`` names it (e.g. ``"custom key store name"``)."""

    def __init__(self, what: str, value: str) -> None:
        super().__init__(f"{what} {value!r} already exists")
        self.what = what
        self.value = value


class DuplicateStoreNameError(AlreadyExistsError):
    def __init__(self, name: str) -> None:
        super().__init__("custom key store name", name)


class DuplicateAliasError(AlreadyExistsError):
    def __init__(self, alias_name: str) -> None:
        super().__init__("alias", alias_name)


class StoreHasKeysError(RepositoryError):
    def __init__(self, custom_key_store_id: str, key_count: int) -> None:
        super().__init__(f"custom key store {custom_key_store_id!r} still holds {key_count} key(s)")
        self.custom_key_store_id = custom_key_store_id
        self.key_count = key_count


class StaleRecordError(RepositoryError):
    """The record changed since it was read (version mismatch): re-read and retry."""


class PendingRotationError(RepositoryError):
    """A kmsuser password rotation is (or is not) pending, contrary to what the call needs."""


class InvalidMarkerError(RepositoryError):
    """A paging marker this repository did not produce for this listing."""


class SchemaVersionError(RepositoryError):
    """The database was written by a newer schema than this code knows."""


# ---------------------------------------------------------------- interface


class MetadataRepository(Protocol):
    # custom key stores -------------------------------------------------------
    def create_custom_key_store(self, record: CustomKeyStoreRecord) -> CustomKeyStoreRecord:
        """Insert. Raises DuplicateStoreNameError, AlreadyExistsError (id)."""
        ...

    def get_custom_key_store(self, custom_key_store_id: str) -> CustomKeyStoreRecord:
        """Raises NotFoundError."""
        ...

    def find_custom_key_store_by_name(self, name: str) -> CustomKeyStoreRecord | None: ...

    def list_custom_key_stores(
        self, *, limit: int = 1000, marker: str | None = None
    ) -> Page[CustomKeyStoreRecord]:
        """Creation order. Raises InvalidMarkerError."""
        ...

    def count_custom_key_stores(self) -> int: ...

    def update_custom_key_store(self, record: CustomKeyStoreRecord) -> CustomKeyStoreRecord:
        """Write every mutable column (id, type and creation date are immutable). A changed
        cluster id is copied to the store's keys in the same transaction. Raises NotFoundError,
        StaleRecordError, DuplicateStoreNameError."""
        ...

    def delete_custom_key_store(self, custom_key_store_id: str) -> None:
        """Raises NotFoundError, StoreHasKeysError (keys of any state, PendingDeletion included)."""
        ...

    def begin_password_rotation(
        self, custom_key_store_id: str, pending_sealed: bytes
    ) -> CustomKeyStoreRecord:
        """Record the next kmsuser password before changing it in the HSM. Raises
        PendingRotationError if one is already pending (resolve it first: the HSM may hold it)."""
        ...

    def commit_password_rotation(self, custom_key_store_id: str) -> CustomKeyStoreRecord:
        """The HSM accepted the pending password: it becomes the current one. Raises
        PendingRotationError when none is pending."""
        ...

    def abort_password_rotation(self, custom_key_store_id: str) -> CustomKeyStoreRecord:
        """The HSM kept the current password: forget the pending one (no-op if none)."""
        ...

    # keys --------------------------------------------------------------------
    def create_key(self, record: KeyRecord) -> KeyRecord:
        """Raises NotFoundError (store), AlreadyExistsError (key id / ARN)."""
        ...

    def get_key(self, key_id: str) -> KeyRecord:
        """Raises NotFoundError."""
        ...

    def list_keys(
        self, *, custom_key_store_id: str | None = None, limit: int = 1000, marker: str | None = None
    ) -> Page[KeyRecord]:
        """Creation order. Raises InvalidMarkerError."""
        ...

    def count_keys(self, custom_key_store_id: str) -> int: ...

    def keys_due_for_deletion(self, now: int) -> list[KeyRecord]:
        """PendingDeletion keys whose deletion date is <= now."""
        ...

    def update_key(self, record: KeyRecord) -> KeyRecord:
        """Write every mutable column. Raises NotFoundError, StaleRecordError."""
        ...

    def delete_key(self, key_id: str) -> None:
        """Delete the key, its aliases and its grants. Raises NotFoundError."""
        ...

    def mark_store_keys_unavailable(self, custom_key_store_id: str) -> int:
        """On disconnect: Enabled/Disabled keys become Unavailable, remembering their state in
        desired_state. Returns how many changed."""
        ...

    def restore_store_keys(self, custom_key_store_id: str) -> int:
        """On connect: Unavailable keys return to desired_state (Enabled if unset)."""
        ...

    # aliases -----------------------------------------------------------------
    def create_alias(self, record: AliasRecord) -> AliasRecord:
        """Raises DuplicateAliasError, NotFoundError (key)."""
        ...

    def get_alias(self, alias_name: str) -> AliasRecord:
        """Raises NotFoundError."""
        ...

    def list_aliases(
        self, *, key_id: str | None = None, limit: int = 100, marker: str | None = None
    ) -> Page[AliasRecord]:
        """Alphabetical by name. Raises InvalidMarkerError."""
        ...

    def count_aliases(self, key_id: str) -> int: ...

    def update_alias(self, alias_name: str, key_id: str, last_updated_date: int) -> AliasRecord:
        """Point an alias at another key. Raises NotFoundError (alias or key)."""
        ...

    def delete_alias(self, alias_name: str) -> None:
        """Raises NotFoundError."""
        ...

    # grants ------------------------------------------------------------------
    def create_grant(self, record: GrantRecord) -> GrantRecord:
        """Raises NotFoundError (key), AlreadyExistsError (grant id)."""
        ...

    def list_grants(self, *, key_id: str | None = None) -> list[GrantRecord]:
        """Grants of one key (or all), in creation order."""
        ...

    def delete_grant(self, grant_id: str) -> None:
        """Raises NotFoundError."""
        ...

    # audit log ---------------------------------------------------------------
    def append_audit_event(self, event: AuditEvent) -> AuditEvent:
        """Append; returns the event with its event_id."""
        ...

    def append_audit_events(self, events: list[AuditEvent]) -> None:
        """Append several in one transaction."""
        ...

    def list_audit_events(
        self, *, after_id: int = 0, limit: int = 100, event: str | None = None, key_id: str | None = None,
        principal: str | None = None,
    ) -> list[AuditEvent]: ...

    # changes, for several worker processes (kms_frontend/store/changes.py) ----
    def changes_since(self, seq: int, limit: int = 10_000) -> tuple[list[tuple[int, str, str]], bool]:
        """(seq, kind, ident) of the changes after ``seq``, oldest first, and whether some are missing."""
        ...

    def last_change(self) -> int: ...

    def prune_changes(self, keep: int = 10_000) -> int: ...

    def close(self) -> None: ...

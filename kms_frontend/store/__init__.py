"""Frontend metadata: the repository interface (repository.py) and its SQLite implementation."""

from kms_frontend.store.repository import (
    AliasRecord,
    AlreadyExistsError,
    AuditEvent,
    CustomKeyStoreRecord,
    DuplicateAliasError,
    DuplicateStoreNameError,
    InvalidMarkerError,
    KeyRecord,
    MetadataRepository,
    NotFoundError,
    Page,
    PendingRotationError,
    RepositoryError,
    SchemaVersionError,
    StaleRecordError,
    StoreHasKeysError,
)
from kms_frontend.store.sqlite import SqliteRepository

__all__ = [
    "AliasRecord",
    "AlreadyExistsError",
    "AuditEvent",
    "CustomKeyStoreRecord",
    "DuplicateAliasError",
    "DuplicateStoreNameError",
    "InvalidMarkerError",
    "KeyRecord",
    "MetadataRepository",
    "NotFoundError",
    "Page",
    "PendingRotationError",
    "RepositoryError",
    "SchemaVersionError",
    "SqliteRepository",
    "StaleRecordError",
    "StoreHasKeysError",
]

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    UNINITIALIZED: _ClassVar[NodeState]
    INITIALIZED: _ClassVar[NodeState]
    ACTIVE: _ClassVar[NodeState]
    DELETED: _ClassVar[NodeState]

class UserType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USER_TYPE_UNSPECIFIED: _ClassVar[UserType]
    PRECO: _ClassVar[UserType]
    CO: _ClassVar[UserType]
    CU: _ClassVar[UserType]
    AU: _ClassVar[UserType]

class MemberHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_HEALTH_UNSPECIFIED: _ClassVar[MemberHealth]
    HEALTHY: _ClassVar[MemberHealth]
    UNREACHABLE: _ClassVar[MemberHealth]
    SELF: _ClassVar[MemberHealth]

class BackupState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKUP_STATE_UNSPECIFIED: _ClassVar[BackupState]
    BACKUP_CREATE_IN_PROGRESS: _ClassVar[BackupState]
    BACKUP_READY: _ClassVar[BackupState]
    BACKUP_DELETED: _ClassVar[BackupState]
    BACKUP_PENDING_DELETION: _ClassVar[BackupState]
NODE_STATE_UNSPECIFIED: NodeState
UNINITIALIZED: NodeState
INITIALIZED: NodeState
ACTIVE: NodeState
DELETED: NodeState
USER_TYPE_UNSPECIFIED: UserType
PRECO: UserType
CO: UserType
CU: UserType
AU: UserType
MEMBER_HEALTH_UNSPECIFIED: MemberHealth
HEALTHY: MemberHealth
UNREACHABLE: MemberHealth
SELF: MemberHealth
BACKUP_STATE_UNSPECIFIED: BackupState
BACKUP_CREATE_IN_PROGRESS: BackupState
BACKUP_READY: BackupState
BACKUP_DELETED: BackupState
BACKUP_PENDING_DELETION: BackupState

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class WriteResult(_message.Message):
    __slots__ = ("replicas", "node_ids", "members")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    replicas: int
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    members: int
    def __init__(self, replicas: _Optional[int] = ..., node_ids: _Optional[_Iterable[str]] = ..., members: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "hsm_id", "cluster_id", "state", "user_count", "key_count", "cluster_csr_pem", "cluster_certificate_pem", "trust_anchor_pem", "cluster_certificate_sha256", "ordinal", "endpoint", "peer_endpoint", "consistency_hash", "positions", "version")
    class PositionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HSM_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    TRUST_ANCHOR_PEM_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PEER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_HASH_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hsm_id: str
    cluster_id: str
    state: NodeState
    user_count: int
    key_count: int
    cluster_csr_pem: str
    cluster_certificate_pem: str
    trust_anchor_pem: str
    cluster_certificate_sha256: str
    ordinal: int
    endpoint: str
    peer_endpoint: str
    consistency_hash: str
    positions: _containers.ScalarMap[str, int]
    version: str
    def __init__(self, node_id: _Optional[str] = ..., hsm_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., user_count: _Optional[int] = ..., key_count: _Optional[int] = ..., cluster_csr_pem: _Optional[str] = ..., cluster_certificate_pem: _Optional[str] = ..., trust_anchor_pem: _Optional[str] = ..., cluster_certificate_sha256: _Optional[str] = ..., ordinal: _Optional[int] = ..., endpoint: _Optional[str] = ..., peer_endpoint: _Optional[str] = ..., consistency_hash: _Optional[str] = ..., positions: _Optional[_Mapping[str, int]] = ..., version: _Optional[str] = ...) -> None: ...

class InitializeRequest(_message.Message):
    __slots__ = ("signed_cluster_certificate_pem", "trust_anchor_pem", "cluster_id")
    SIGNED_CLUSTER_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    TRUST_ANCHOR_PEM_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    signed_cluster_certificate_pem: str
    trust_anchor_pem: str
    cluster_id: str
    def __init__(self, signed_cluster_certificate_pem: _Optional[str] = ..., trust_anchor_pem: _Optional[str] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class InitializeResponse(_message.Message):
    __slots__ = ("cluster_id", "state", "preco_username")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRECO_USERNAME_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    state: NodeState
    preco_username: str
    def __init__(self, cluster_id: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., preco_username: _Optional[str] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("user_type", "username", "password", "client_id")
    USER_TYPE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    user_type: UserType
    username: str
    password: str
    client_id: str
    def __init__(self, user_type: _Optional[_Union[UserType, str]] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("session_token", "user_id", "user_type", "node_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TYPE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    user_id: int
    user_type: UserType
    node_id: str
    def __init__(self, session_token: _Optional[str] = ..., user_id: _Optional[int] = ..., user_type: _Optional[_Union[UserType, str]] = ..., node_id: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("user_id", "user_type", "username", "login_failure_count", "locked", "two_factor", "version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TYPE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    TWO_FACTOR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    user_type: UserType
    username: str
    login_failure_count: int
    locked: bool
    two_factor: bool
    version: int
    def __init__(self, user_id: _Optional[int] = ..., user_type: _Optional[_Union[UserType, str]] = ..., username: _Optional[str] = ..., login_failure_count: _Optional[int] = ..., locked: _Optional[bool] = ..., two_factor: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("session_token", "user_type", "username", "password", "this_node_only")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_TYPE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    THIS_NODE_ONLY_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    user_type: UserType
    username: str
    password: str
    this_node_only: bool
    def __init__(self, session_token: _Optional[str] = ..., user_type: _Optional[_Union[UserType, str]] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., this_node_only: _Optional[bool] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("user", "write")
    USER_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    user: User
    write: WriteResult
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., write: _Optional[_Union[WriteResult, _Mapping]] = ...) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("session_token", "username", "this_node_only")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    THIS_NODE_ONLY_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    username: str
    this_node_only: bool
    def __init__(self, session_token: _Optional[str] = ..., username: _Optional[str] = ..., this_node_only: _Optional[bool] = ...) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("session_token", "user_type", "username", "new_password", "this_node_only")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_TYPE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    THIS_NODE_ONLY_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    user_type: UserType
    username: str
    new_password: str
    this_node_only: bool
    def __init__(self, session_token: _Optional[str] = ..., user_type: _Optional[_Union[UserType, str]] = ..., username: _Optional[str] = ..., new_password: _Optional[str] = ..., this_node_only: _Optional[bool] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class SyncUserRequest(_message.Message):
    __slots__ = ("session_token", "username")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    username: str
    def __init__(self, session_token: _Optional[str] = ..., username: _Optional[str] = ...) -> None: ...

class GenerateKeyRequest(_message.Message):
    __slots__ = ("session_token", "key_size_bytes", "label", "share_with_user_ids", "min_replicas", "timeout_ms", "session_key")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SHARE_WITH_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    key_size_bytes: int
    label: str
    share_with_user_ids: _containers.RepeatedScalarFieldContainer[int]
    min_replicas: int
    timeout_ms: int
    session_key: bool
    def __init__(self, session_token: _Optional[str] = ..., key_size_bytes: _Optional[int] = ..., label: _Optional[str] = ..., share_with_user_ids: _Optional[_Iterable[int]] = ..., min_replicas: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., session_key: _Optional[bool] = ...) -> None: ...

class GenerateKeyResponse(_message.Message):
    __slots__ = ("key_handle", "write")
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    key_handle: int
    write: WriteResult
    def __init__(self, key_handle: _Optional[int] = ..., write: _Optional[_Union[WriteResult, _Mapping]] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_handle", "label", "owner_user_id", "owner_username", "shared_user_ids", "key_size_bytes", "key_type", "token", "extractable", "never_extractable", "created_ms", "kcv")
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_USERNAME_FIELD_NUMBER: _ClassVar[int]
    SHARED_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    KEY_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXTRACTABLE_FIELD_NUMBER: _ClassVar[int]
    NEVER_EXTRACTABLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    KCV_FIELD_NUMBER: _ClassVar[int]
    key_handle: int
    label: str
    owner_user_id: int
    owner_username: str
    shared_user_ids: _containers.RepeatedScalarFieldContainer[int]
    key_size_bytes: int
    key_type: str
    token: bool
    extractable: bool
    never_extractable: bool
    created_ms: int
    kcv: str
    def __init__(self, key_handle: _Optional[int] = ..., label: _Optional[str] = ..., owner_user_id: _Optional[int] = ..., owner_username: _Optional[str] = ..., shared_user_ids: _Optional[_Iterable[int]] = ..., key_size_bytes: _Optional[int] = ..., key_type: _Optional[str] = ..., token: _Optional[bool] = ..., extractable: _Optional[bool] = ..., never_extractable: _Optional[bool] = ..., created_ms: _Optional[int] = ..., kcv: _Optional[str] = ...) -> None: ...

class FindKeysRequest(_message.Message):
    __slots__ = ("session_token", "label", "owner_user_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    label: str
    owner_user_id: int
    def __init__(self, session_token: _Optional[str] = ..., label: _Optional[str] = ..., owner_user_id: _Optional[int] = ...) -> None: ...

class FindKeysResponse(_message.Message):
    __slots__ = ("key_handles",)
    KEY_HANDLES_FIELD_NUMBER: _ClassVar[int]
    key_handles: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key_handles: _Optional[_Iterable[int]] = ...) -> None: ...

class FindAllKeysRequest(_message.Message):
    __slots__ = ("session_token", "user_id", "include_hash")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HASH_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    user_id: int
    include_hash: bool
    def __init__(self, session_token: _Optional[str] = ..., user_id: _Optional[int] = ..., include_hash: _Optional[bool] = ...) -> None: ...

class KeyOwnership(_message.Message):
    __slots__ = ("key_handle", "owned")
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    OWNED_FIELD_NUMBER: _ClassVar[int]
    key_handle: int
    owned: bool
    def __init__(self, key_handle: _Optional[int] = ..., owned: _Optional[bool] = ...) -> None: ...

class FindAllKeysResponse(_message.Message):
    __slots__ = ("keys", "key_hash", "node_id")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_HASH_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyOwnership]
    key_hash: str
    node_id: str
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyOwnership, _Mapping]]] = ..., key_hash: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class KeyRequest(_message.Message):
    __slots__ = ("session_token", "key_handle")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    key_handle: int
    def __init__(self, session_token: _Optional[str] = ..., key_handle: _Optional[int] = ...) -> None: ...

class ShareKeyRequest(_message.Message):
    __slots__ = ("session_token", "key_handle", "user_ids", "unshare")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    UNSHARE_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    key_handle: int
    user_ids: _containers.RepeatedScalarFieldContainer[int]
    unshare: bool
    def __init__(self, session_token: _Optional[str] = ..., key_handle: _Optional[int] = ..., user_ids: _Optional[_Iterable[int]] = ..., unshare: _Optional[bool] = ...) -> None: ...

class SyncKeyRequest(_message.Message):
    __slots__ = ("session_token", "key_handle")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    key_handle: int
    def __init__(self, session_token: _Optional[str] = ..., key_handle: _Optional[int] = ...) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ("session_token", "key_handle", "plaintext", "aad")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    key_handle: int
    plaintext: bytes
    aad: bytes
    def __init__(self, session_token: _Optional[str] = ..., key_handle: _Optional[int] = ..., plaintext: _Optional[bytes] = ..., aad: _Optional[bytes] = ...) -> None: ...

class EncryptResponse(_message.Message):
    __slots__ = ("iv", "ciphertext")
    IV_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    iv: bytes
    ciphertext: bytes
    def __init__(self, iv: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ("session_token", "key_handle", "iv", "ciphertext", "aad")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    key_handle: int
    iv: bytes
    ciphertext: bytes
    aad: bytes
    def __init__(self, session_token: _Optional[str] = ..., key_handle: _Optional[int] = ..., iv: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ..., aad: _Optional[bytes] = ...) -> None: ...

class DecryptResponse(_message.Message):
    __slots__ = ("plaintext",)
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ...) -> None: ...

class GenerateRandomRequest(_message.Message):
    __slots__ = ("session_token", "length")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    length: int
    def __init__(self, session_token: _Optional[str] = ..., length: _Optional[int] = ...) -> None: ...

class GenerateRandomResponse(_message.Message):
    __slots__ = ("random",)
    RANDOM_FIELD_NUMBER: _ClassVar[int]
    random: bytes
    def __init__(self, random: _Optional[bytes] = ...) -> None: ...

class GenerateDataKeyRequest(_message.Message):
    __slots__ = ("session_token", "key_handle", "length", "aad", "without_plaintext")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    AAD_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    key_handle: int
    length: int
    aad: bytes
    without_plaintext: bool
    def __init__(self, session_token: _Optional[str] = ..., key_handle: _Optional[int] = ..., length: _Optional[int] = ..., aad: _Optional[bytes] = ..., without_plaintext: _Optional[bool] = ...) -> None: ...

class GenerateDataKeyResponse(_message.Message):
    __slots__ = ("plaintext", "iv", "ciphertext")
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    iv: bytes
    ciphertext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ..., iv: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class CryptoOp(_message.Message):
    __slots__ = ("id", "encrypt", "decrypt", "random", "data_key", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_FIELD_NUMBER: _ClassVar[int]
    DECRYPT_FIELD_NUMBER: _ClassVar[int]
    RANDOM_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    encrypt: EncryptRequest
    decrypt: DecryptRequest
    random: GenerateRandomRequest
    data_key: GenerateDataKeyRequest
    request_id: str
    def __init__(self, id: _Optional[int] = ..., encrypt: _Optional[_Union[EncryptRequest, _Mapping]] = ..., decrypt: _Optional[_Union[DecryptRequest, _Mapping]] = ..., random: _Optional[_Union[GenerateRandomRequest, _Mapping]] = ..., data_key: _Optional[_Union[GenerateDataKeyRequest, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CryptoError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CryptoResult(_message.Message):
    __slots__ = ("id", "encrypt", "decrypt", "random", "data_key", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_FIELD_NUMBER: _ClassVar[int]
    DECRYPT_FIELD_NUMBER: _ClassVar[int]
    RANDOM_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    encrypt: EncryptResponse
    decrypt: DecryptResponse
    random: GenerateRandomResponse
    data_key: GenerateDataKeyResponse
    error: CryptoError
    def __init__(self, id: _Optional[int] = ..., encrypt: _Optional[_Union[EncryptResponse, _Mapping]] = ..., decrypt: _Optional[_Union[DecryptResponse, _Mapping]] = ..., random: _Optional[_Union[GenerateRandomResponse, _Mapping]] = ..., data_key: _Optional[_Union[GenerateDataKeyResponse, _Mapping]] = ..., error: _Optional[_Union[CryptoError, _Mapping]] = ...) -> None: ...

class CryptoBatch(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[CryptoOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[CryptoOp, _Mapping]]] = ...) -> None: ...

class CryptoBatchResult(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CryptoResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CryptoResult, _Mapping]]] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("node_id", "hsm_id", "ordinal", "endpoint", "peer_endpoint", "health", "positions", "lag", "last_seen_ms", "consistency_hash")
    class PositionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HSM_ID_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PEER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_HASH_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hsm_id: str
    ordinal: int
    endpoint: str
    peer_endpoint: str
    health: MemberHealth
    positions: _containers.ScalarMap[str, int]
    lag: int
    last_seen_ms: int
    consistency_hash: str
    def __init__(self, node_id: _Optional[str] = ..., hsm_id: _Optional[str] = ..., ordinal: _Optional[int] = ..., endpoint: _Optional[str] = ..., peer_endpoint: _Optional[str] = ..., health: _Optional[_Union[MemberHealth, str]] = ..., positions: _Optional[_Mapping[str, int]] = ..., lag: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., consistency_hash: _Optional[str] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("cluster_id", "state", "cluster_certificate_pem", "cluster_certificate_sha256", "trust_anchor_pem", "members", "source_backup_id", "backup_retention_days", "backup_interval_s", "reporting_node_id")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    TRUST_ANCHOR_PEM_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    BACKUP_RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    BACKUP_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    REPORTING_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    state: NodeState
    cluster_certificate_pem: str
    cluster_certificate_sha256: str
    trust_anchor_pem: str
    members: _containers.RepeatedCompositeFieldContainer[Member]
    source_backup_id: str
    backup_retention_days: int
    backup_interval_s: int
    reporting_node_id: str
    def __init__(self, cluster_id: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., cluster_certificate_pem: _Optional[str] = ..., cluster_certificate_sha256: _Optional[str] = ..., trust_anchor_pem: _Optional[str] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., source_backup_id: _Optional[str] = ..., backup_retention_days: _Optional[int] = ..., backup_interval_s: _Optional[int] = ..., reporting_node_id: _Optional[str] = ...) -> None: ...

class AddNodeRequest(_message.Message):
    __slots__ = ("session_token", "endpoint", "peer_endpoint")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PEER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    endpoint: str
    peer_endpoint: str
    def __init__(self, session_token: _Optional[str] = ..., endpoint: _Optional[str] = ..., peer_endpoint: _Optional[str] = ...) -> None: ...

class AddNodeResponse(_message.Message):
    __slots__ = ("member", "backup_id")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    member: Member
    backup_id: str
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., backup_id: _Optional[str] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("session_token", "node_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    node_id: str
    def __init__(self, session_token: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("backup_id",)
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    backup_id: str
    def __init__(self, backup_id: _Optional[str] = ...) -> None: ...

class JoinClusterRequest(_message.Message):
    __slots__ = ("backup_id", "node_id_expected", "ordinal", "cluster_id")
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    backup_id: str
    node_id_expected: str
    ordinal: int
    cluster_id: str
    def __init__(self, backup_id: _Optional[str] = ..., node_id_expected: _Optional[str] = ..., ordinal: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class RestoreClusterRequest(_message.Message):
    __slots__ = ("backup_id", "cluster_id")
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    backup_id: str
    cluster_id: str
    def __init__(self, backup_id: _Optional[str] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class RestoreClusterResponse(_message.Message):
    __slots__ = ("cluster_id", "source_backup_id")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    source_backup_id: str
    def __init__(self, cluster_id: _Optional[str] = ..., source_backup_id: _Optional[str] = ...) -> None: ...

class Backup(_message.Message):
    __slots__ = ("backup_id", "cluster_id", "state", "create_timestamp_ms", "delete_timestamp_ms", "source_backup_id", "source_cluster_id", "user_count", "key_count", "trigger", "never_expires", "cluster_certificate_sha256", "size_bytes")
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    DELETE_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    NEVER_EXPIRES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    backup_id: str
    cluster_id: str
    state: BackupState
    create_timestamp_ms: int
    delete_timestamp_ms: int
    source_backup_id: str
    source_cluster_id: str
    user_count: int
    key_count: int
    trigger: str
    never_expires: bool
    cluster_certificate_sha256: str
    size_bytes: int
    def __init__(self, backup_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., state: _Optional[_Union[BackupState, str]] = ..., create_timestamp_ms: _Optional[int] = ..., delete_timestamp_ms: _Optional[int] = ..., source_backup_id: _Optional[str] = ..., source_cluster_id: _Optional[str] = ..., user_count: _Optional[int] = ..., key_count: _Optional[int] = ..., trigger: _Optional[str] = ..., never_expires: _Optional[bool] = ..., cluster_certificate_sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("session_token", "backup_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    backup_id: str
    def __init__(self, session_token: _Optional[str] = ..., backup_id: _Optional[str] = ...) -> None: ...

class CreateBackupRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class ListBackupsRequest(_message.Message):
    __slots__ = ("cluster_id", "include_deleted")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    include_deleted: bool
    def __init__(self, cluster_id: _Optional[str] = ..., include_deleted: _Optional[bool] = ...) -> None: ...

class ListBackupsResponse(_message.Message):
    __slots__ = ("backups",)
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    backups: _containers.RepeatedCompositeFieldContainer[Backup]
    def __init__(self, backups: _Optional[_Iterable[_Union[Backup, _Mapping]]] = ...) -> None: ...

class SetBackupRetentionRequest(_message.Message):
    __slots__ = ("session_token", "days")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    days: int
    def __init__(self, session_token: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class ReplicationEntry(_message.Message):
    __slots__ = ("origin", "seq", "hlc", "kind", "entity", "sealed_record")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    SEALED_RECORD_FIELD_NUMBER: _ClassVar[int]
    origin: str
    seq: int
    hlc: int
    kind: str
    entity: str
    sealed_record: bytes
    def __init__(self, origin: _Optional[str] = ..., seq: _Optional[int] = ..., hlc: _Optional[int] = ..., kind: _Optional[str] = ..., entity: _Optional[str] = ..., sealed_record: _Optional[bytes] = ...) -> None: ...

class ReplicateRequest(_message.Message):
    __slots__ = ("from_node_id", "entries")
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    from_node_id: str
    entries: _containers.RepeatedCompositeFieldContainer[ReplicationEntry]
    def __init__(self, from_node_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[ReplicationEntry, _Mapping]]] = ...) -> None: ...

class ReplicateResponse(_message.Message):
    __slots__ = ("positions", "consistency_hash")
    class PositionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_HASH_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.ScalarMap[str, int]
    consistency_hash: str
    def __init__(self, positions: _Optional[_Mapping[str, int]] = ..., consistency_hash: _Optional[str] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("origin", "after_seq", "limit")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    origin: str
    after_seq: int
    limit: int
    def __init__(self, origin: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ReplicationEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[ReplicationEntry, _Mapping]]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("from_node_id", "positions", "consistency_hash")
    class PositionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_HASH_FIELD_NUMBER: _ClassVar[int]
    from_node_id: str
    positions: _containers.ScalarMap[str, int]
    consistency_hash: str
    def __init__(self, from_node_id: _Optional[str] = ..., positions: _Optional[_Mapping[str, int]] = ..., consistency_hash: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("node_id", "state", "positions", "consistency_hash", "cluster_id")
    class PositionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_HASH_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: NodeState
    positions: _containers.ScalarMap[str, int]
    consistency_hash: str
    cluster_id: str
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., positions: _Optional[_Mapping[str, int]] = ..., consistency_hash: _Optional[str] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class SessionsForRequest(_message.Message):
    __slots__ = ("username", "exclude_client_id")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    username: str
    exclude_client_id: str
    def __init__(self, username: _Optional[str] = ..., exclude_client_id: _Optional[str] = ...) -> None: ...

class SessionsForResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: int
    def __init__(self, sessions: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("from_node_id", "records", "positions")
    class PositionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    from_node_id: str
    records: _containers.RepeatedCompositeFieldContainer[ReplicationEntry]
    positions: _containers.ScalarMap[str, int]
    def __init__(self, from_node_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[ReplicationEntry, _Mapping]]] = ..., positions: _Optional[_Mapping[str, int]] = ...) -> None: ...

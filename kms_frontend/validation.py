"""Request field validation with AWS's ValidationException messages.

AWS checks the request model first and reports every violated constraint at once::

    1 validation error detected: Value '<v>' at '<field>' failed to satisfy constraint: Member must ...

:class:`Checks` collects violations the same way; call ``.done()`` to raise them together::

    Checks().custom_key_store_name(req.name).cloud_hsm_cluster_id(req.cluster).done()

Field names are AWS's lowerCamelCase member names. Sensitive strings (KeyStorePassword) appear
as ``'***'``; blobs (Plaintext, CiphertextBlob) appear without a value, as AWS does. ``None``
means "not given": optional fields skip their checks, required ones report ``Member must not be
null``. The ``validate_*`` functions run the service-level rules that come after the model
checks and raise their own exception types (TagException, NotAuthorizedException, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from kms_frontend import errors
from kms_frontend.ciphertext import MAX_ENCODED_CONTEXT_BYTES, encode_context

Shown = Literal["value", "masked", "omitted"]

CLUSTER_ID_PATTERN = "cluster-[2-7a-zA-Z]{11,16}"
ALIAS_NAME_PATTERN = "^[a-zA-Z0-9:/_-]+$"
MARKER_PATTERN = "[\\u0020-\\u00FF]*"
POLICY_PATTERN = "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+"
POLICY_NAME_PATTERN = "[\\w]+"

_REGEX = {
    CLUSTER_ID_PATTERN: re.compile(CLUSTER_ID_PATTERN),
    ALIAS_NAME_PATTERN: re.compile(r"[a-zA-Z0-9:/_-]+"),
    MARKER_PATTERN: re.compile("[\u0020-\u00ff]*"),
    POLICY_PATTERN: re.compile("[\u0009\u000a\u000d\u0020-\u00ff]+"),
    POLICY_NAME_PATTERN: re.compile(r"\w+"),
}

DATA_KEY_SPECS = ("AES_256", "AES_128")
KEY_SPECS = (
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
)
CUSTOMER_MASTER_KEY_SPECS = KEY_SPECS[:13]
KEY_USAGES = ("SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE")
ORIGINS = ("AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")
CUSTOM_KEY_STORE_TYPES = ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")
ENCRYPTION_ALGORITHMS = ("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")

MAX_TAGS_PER_KEY = 50
POLICY_SIZE_QUOTA = 32768  # bytes (documented quota); the model allows 131072 characters
MAX_LIMIT = 1000


class Checks:
    """Collects AWS model-constraint violations; ``done()`` raises one ValidationException."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def _fail(self, field: str, value: object, constraint: str, shown: Shown) -> Checks:
        self.failures.append(errors.validation_failure(field, constraint, value, shown=shown))
        return self

    def done(self) -> None:
        if self.failures:
            raise errors.validation_error(self.failures)

    # ------------------------------------------------------------ generic constraints

    def required(self, field: str, value: object) -> Checks:
        if value is None:
            self._fail(field, None, "Member must not be null", "value")
        return self

    def length(
        self,
        field: str,
        value: str | bytes | Sequence[object] | None,
        lo: int,
        hi: int,
        *,
        required: bool = False,
        shown: Shown = "value",
    ) -> Checks:
        if value is None:
            return self.required(field, value) if required else self
        if len(value) < lo:
            self._fail(field, value, f"Member must have length greater than or equal to {lo}", shown)
        elif len(value) > hi:
            self._fail(field, value, f"Member must have length less than or equal to {hi}", shown)
        return self

    def value_range(
        self, field: str, value: int | None, lo: int, hi: int, *, required: bool = False
    ) -> Checks:
        if value is None:
            return self.required(field, value) if required else self
        if value < lo:
            self._fail(field, value, f"Member must have value greater than or equal to {lo}", "value")
        elif value > hi:
            self._fail(field, value, f"Member must have value less than or equal to {hi}", "value")
        return self

    def enum(
        self, field: str, value: str | None, allowed: Sequence[str], *, required: bool = False
    ) -> Checks:
        if value is None:
            return self.required(field, value) if required else self
        if value not in allowed:
            self._fail(field, value, f"Member must satisfy enum value set: [{', '.join(allowed)}]", "value")
        return self

    def pattern(self, field: str, value: str | None, pattern: str, shown: Shown = "value") -> Checks:
        regex = _REGEX.get(pattern) or re.compile(pattern)
        if value is not None and regex.fullmatch(value) is None:
            self._fail(field, value, f"Member must satisfy regular expression pattern: {pattern}", shown)
        return self

    # ------------------------------------------------------------ custom key store fields

    def custom_key_store_id(self, value: str | None, *, required: bool = True) -> Checks:
        return self.length("customKeyStoreId", value, 1, 64, required=required)

    def custom_key_store_name(
        self, value: str | None, *, required: bool = True, field: str = "customKeyStoreName"
    ) -> Checks:
        return self.length(field, value, 1, 256, required=required)

    def cloud_hsm_cluster_id(self, value: str | None, *, required: bool = False) -> Checks:
        self.length("cloudHsmClusterId", value, 19, 24, required=required)
        return self.pattern("cloudHsmClusterId", value, CLUSTER_ID_PATTERN)

    def trust_anchor_certificate(self, value: str | None, *, required: bool = False) -> Checks:
        return self.length("trustAnchorCertificate", value, 1, 5000, required=required)

    def key_store_password(self, value: str | None, *, required: bool = False) -> Checks:
        return self.length("keyStorePassword", value, 7, 32, required=required, shown="masked")

    def custom_key_store_type(self, value: str | None) -> Checks:
        return self.enum("customKeyStoreType", value, CUSTOM_KEY_STORE_TYPES)

    # ------------------------------------------------------------ paging

    def limit(self, value: int | None) -> Checks:
        return self.value_range("limit", value, 1, MAX_LIMIT)

    def marker(self, value: str | None) -> Checks:
        self.length("marker", value, 1, 1024)
        return self.pattern("marker", value, MARKER_PATTERN)

    # ------------------------------------------------------------ keys

    def key_id(self, value: str | None, *, field: str = "keyId", required: bool = True) -> Checks:
        return self.length(field, value, 1, 2048, required=required)

    def description(self, value: str | None) -> Checks:
        return self.length("description", value, 0, 8192)

    def key_spec(self, value: str | None) -> Checks:
        return self.enum("keySpec", value, KEY_SPECS)

    def customer_master_key_spec(self, value: str | None) -> Checks:
        return self.enum("customerMasterKeySpec", value, CUSTOMER_MASTER_KEY_SPECS)

    def key_usage(self, value: str | None) -> Checks:
        return self.enum("keyUsage", value, KEY_USAGES)

    def origin(self, value: str | None) -> Checks:
        return self.enum("origin", value, ORIGINS)

    def pending_window_in_days(self, value: int | None) -> Checks:
        """The service range 7..30 (the model's 1..365 is wider than what KMS accepts)."""
        return self.value_range("pendingWindowInDays", value, 7, 30)

    def grant_tokens(self, value: Sequence[str] | None) -> Checks:
        if value is not None and len(value) > 10:
            self._fail(
                "grantTokens",
                "[" + ", ".join(value) + "]",
                "Member must have length less than or equal to 10",
                "value",
            )
        return self

    def policy(self, value: str | None, *, required: bool = False) -> Checks:
        self.length("policy", value, 1, 131072, required=required)
        return self.pattern("policy", value, POLICY_PATTERN)

    def policy_name(self, value: str | None, *, required: bool = False) -> Checks:
        self.length("policyName", value, 1, 128, required=required)
        return self.pattern("policyName", value, POLICY_NAME_PATTERN)

    def alias_name(self, value: str | None, *, required: bool = True) -> Checks:
        self.length("aliasName", value, 1, 256, required=required)
        return self.pattern("aliasName", value, ALIAS_NAME_PATTERN)

    def tags(self, tags: Sequence[tuple[str, str]] | None, *, field: str = "tags") -> Checks:
        for n, (key, value) in enumerate(tags or (), start=1):
            self.length(f"{field}.{n}.member.tagKey", key, 1, 128, required=True)
            self.length(f"{field}.{n}.member.tagValue", value, 0, 256, required=True)
        return self

    def tag_keys(self, keys: Sequence[str] | None, *, field: str = "tagKeys") -> Checks:
        for n, key in enumerate(keys or (), start=1):
            self.length(f"{field}.{n}.member", key, 1, 128, required=True)
        return self

    # ------------------------------------------------------------ cryptographic operations

    def plaintext(self, value: bytes | None, *, required: bool = True) -> Checks:
        return self.length("plaintext", value, 1, 4096, required=required, shown="omitted")

    def ciphertext_blob(self, value: bytes | None, *, required: bool = True) -> Checks:
        return self.length("ciphertextBlob", value, 1, 6144, required=required, shown="omitted")

    def number_of_bytes(self, value: int | None, *, required: bool = False) -> Checks:
        return self.value_range("numberOfBytes", value, 1, 1024, required=required)

    def data_key_spec(self, value: str | None) -> Checks:
        return self.enum("keySpec", value, DATA_KEY_SPECS)

    def encryption_algorithm(self, value: str | None, *, field: str = "encryptionAlgorithm") -> Checks:
        return self.enum(field, value, ENCRYPTION_ALGORITHMS)


# ---------------------------------------------------------------- service-level rules


def page_limit(limit: int | None, *, default: int, maximum: int) -> int:
    """The page size to use: ``default`` when absent, capped at the operation's ``maximum``.

    Validate with ``Checks().limit(limit)`` first (1..1000). Defaults/maxima per operation:
    ListKeys 100/1000, ListAliases 50/100, ListResourceTags 50/50, DescribeCustomKeyStores
    1000/1000, ListKeyPolicies 100/1000.
    """
    return default if limit is None else min(limit, maximum)


def validate_data_key_spec(number_of_bytes: int | None, key_spec: str | None) -> int:
    """GenerateDataKey*: exactly one of NumberOfBytes / KeySpec; returns the data key length."""
    Checks().number_of_bytes(number_of_bytes).data_key_spec(key_spec).done()
    if (number_of_bytes is None) == (key_spec is None):
        raise errors.data_key_spec_required()
    if key_spec is not None:
        return 32 if key_spec == "AES_256" else 16
    assert number_of_bytes is not None
    return number_of_bytes


def validate_alias_name(alias_name: str | None) -> str:
    """Model checks, then the alias/ prefix, the ':' ban and the reserved alias/aws/ prefix."""
    Checks().alias_name(alias_name).done()
    assert alias_name is not None
    if not alias_name.startswith("alias/"):
        raise errors.alias_prefix_required()
    if ":" in alias_name:
        raise errors.alias_invalid_characters(alias_name)
    if alias_name == "alias/":
        raise errors.InvalidAliasNameException('Alias name must contain a name after the prefix "alias/".')
    if alias_name.startswith("alias/aws/"):
        raise errors.alias_reserved(alias_name)
    return alias_name


def validate_tags(tags: Sequence[tuple[str, str]], *, existing: Iterable[str] = ()) -> None:
    """TagResource / CreateKey tags: model lengths, reserved ``aws:`` prefix, duplicates, 50 per key.

    ``existing`` are the tag keys the key already has (they count toward the 50).
    """
    Checks().tags(tags).done()
    seen: set[str] = set()
    for key, _ in tags:
        if key.lower().startswith("aws:"):
            raise errors.reserved_tag_key()
        if key in seen:
            raise errors.TagException(f"Duplicate tag key '{key}' in the request; tag keys must be unique.")
        seen.add(key)
    total = len(seen | set(existing))
    if total > MAX_TAGS_PER_KEY:
        raise errors.LimitExceededException(
            f"A KMS key can have at most {MAX_TAGS_PER_KEY} tags; this request would give it {total}. "
            "Remove tags with UntagResource first."
        )


def validate_tag_keys(keys: Sequence[str]) -> None:
    """UntagResource: model lengths and the reserved ``aws:`` prefix."""
    Checks().tag_keys(keys).done()
    if any(k.lower().startswith("aws:") for k in keys):
        raise errors.reserved_tag_key()


def validate_policy(policy: str | None) -> dict[str, object]:
    """Key policy: model checks, the 32 KB quota, then JSON syntax. Returns the parsed document.

    Semantic checks (principals, lockout safety) belong to the service layer.
    """
    Checks().policy(policy, required=True).done()
    assert policy is not None
    size = len(policy.encode("utf-8"))
    if size > POLICY_SIZE_QUOTA:
        raise errors.LimitExceededException(
            f"The key policy is {size} bytes; the maximum key policy size is {POLICY_SIZE_QUOTA} bytes."
        )
    try:
        document = json.loads(policy)
    except ValueError as exc:
        raise errors.MalformedPolicyDocumentException(
            f"The key policy is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
            if isinstance(exc, json.JSONDecodeError)
            else "The key policy is not valid JSON."
        ) from exc
    if not isinstance(document, dict) or "Statement" not in document:
        raise errors.MalformedPolicyDocumentException(
            "The key policy must be a JSON object with a Statement element."
        )
    return document


def validate_encryption_context(
    context: Mapping[str, str] | None, *, field: str = "encryptionContext"
) -> None:
    """Encryption context: strings only, valid Unicode, and small enough to travel as AAD."""
    encoded_encryption_context(context, field=field)


def encoded_encryption_context(
    context: Mapping[str, str] | None, *, field: str = "encryptionContext"
) -> bytes:
    """:func:`validate_encryption_context`, returning the encoding it checked, for the AAD
    (so the crypto path encodes a context once, not once to check it and again to use it)."""
    try:
        encoded = encode_context(context)
    except (TypeError, ValueError) as exc:
        raise errors.ValidationException(
            f"Invalid {field}: keys and values must be valid Unicode strings."
        ) from exc
    size = len(encoded)
    if size > MAX_ENCODED_CONTEXT_BYTES:
        raise errors.ValidationException(
            f"The {field} is too large: it encodes to {size} bytes, the maximum is "
            f"{MAX_ENCODED_CONTEXT_BYTES} bytes. Use fewer or shorter pairs."
        )
    return encoded

"""The service's own rules on request values, beyond the model's constraints.

The model's constraints (required members, lengths, enums, patterns, ranges) are checked once for
every entry point by :meth:`ServiceModel.validate <kms_frontend.service.model.ServiceModel.validate>`
before an operation runs. What KMS checks after that lives here: the deletion window KMS accepts
(7..30 days inside the model's 1..365), exactly one of NumberOfBytes and KeySpec, alias names,
reserved and duplicate tag keys, the key policy's size quota and JSON, and encryption contexts
that must travel as AES-GCM additional data. Each raises the AWS exception AWS raises for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from plumbing.jsontext import loads_bounded

from .. import errors
from ..ciphertext import MAX_ENCODED_CONTEXT_BYTES, encode_context
from ..store.repository import Page

MAX_TAGS_PER_KEY = 50
POLICY_SIZE_QUOTA = 32768  # bytes (documented quota); the model allows 131072 characters
PENDING_WINDOW_DAYS = (7, 30)


def page_limit(limit: int | None, *, default: int, maximum: int) -> int:
    """The page size to use: ``default`` when absent, capped at the operation's ``maximum``.

    The model has checked 1..1000 already. Defaults/maxima per operation:
    ListKeys 100/1000, ListAliases 50/100, ListResourceTags 50/50, DescribeCustomKeyStores
    1000/1000, ListKeyPolicies 100/1000.
    """
    return default if limit is None else min(limit, maximum)


def validate_data_key_spec(number_of_bytes: int | None, key_spec: str | None) -> int:
    """GenerateDataKey*: exactly one of NumberOfBytes / KeySpec; returns the data key length."""
    if (number_of_bytes is None) == (key_spec is None):
        raise errors.data_key_spec_required()
    if key_spec is not None:
        return 32 if key_spec == "AES_256" else 16
    assert number_of_bytes is not None
    return number_of_bytes


def validate_alias_name(alias_name: str) -> str:
    """The alias/ prefix, the ':' ban and the reserved alias/aws/ prefix."""
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
    """TagResource / CreateKey tags: reserved ``aws:`` prefix, duplicates, 50 per key.

    ``existing`` are the tag keys the key already has (they count toward the 50).
    """
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
    """UntagResource: the reserved ``aws:`` prefix."""
    if any(k.lower().startswith("aws:") for k in keys):
        raise errors.reserved_tag_key()


def validate_policy(policy: str) -> dict[str, object]:
    """Key policy: the 32 KB quota, then JSON syntax. Returns the parsed document."""
    size = len(policy.encode("utf-8"))
    if size > POLICY_SIZE_QUOTA:
        raise errors.LimitExceededException(
            f"The key policy is {size} bytes; the maximum key policy size is {POLICY_SIZE_QUOTA} bytes."
        )
    try:
        document = loads_bounded(policy)
    except ValueError as exc:
        raise errors.MalformedPolicyDocumentException(
            f"The key policy is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
            if isinstance(exc, json.JSONDecodeError)
            else f"The key policy is not valid JSON: {exc}."
        ) from None
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


def validate_pending_window(days: int | None) -> None:
    """ScheduleKeyDeletion: KMS takes 7..30 days (the model's 1..365 is wider)."""
    low, high = PENDING_WINDOW_DAYS
    if days is not None and not low <= days <= high:
        constraint = (f"Member must have value greater than or equal to {low}" if days < low
                      else f"Member must have value less than or equal to {high}")
        raise errors.validation_error([errors.validation_failure("pendingWindowInDays", constraint, days)])


def require(**members: object) -> None:
    """Members the model leaves optional (for other key store types, or other forms of the call)
    that this call needs: ``Member must not be null`` for each one missing, in one exception."""
    missing = [errors.validation_failure(name, "Member must not be null") for name, value in members.items()
               if value is None]
    if missing:
        raise errors.validation_error(missing)


def require_number_of_bytes(number_of_bytes: int | None) -> int:
    """GenerateRandom: NumberOfBytes must be given (the model leaves it optional)."""
    require(numberOfBytes=number_of_bytes)
    assert number_of_bytes is not None
    return number_of_bytes


def paginate(items: list, limit: int, marker: str | None) -> Page:
    """Offset paging over a small in-memory list; the marker is the next offset."""
    try:
        start = int(marker) if marker else 0
    except ValueError:
        raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.") from None
    if start < 0 or start > len(items):
        raise errors.InvalidMarkerException("The request was rejected because the marker is not valid.")
    end = start + limit
    return Page(items[start:end], str(end) if end < len(items) else None)

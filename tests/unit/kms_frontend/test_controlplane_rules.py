"""The control plane's pure rules: subnets as Availability Zones, backup retention, tags, page
tokens, Regions; and the backup store's copy to another Region and NeverExpires."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from backup_store import BackupInvalidStateError, BackupMeta, BackupState, BackupStore
from kms_frontend.controlplane import errors as e
from kms_frontend.controlplane.backups import _finish_copy, finish_copies
from kms_frontend.controlplane.clusters import _retention, validate_tags, zones_of
from kms_frontend.controlplane.service import ControlPlaneSettings, Regions, decode_token, encode_token, page


def test_subnets_stand_for_the_regions_zones_in_order() -> None:
    assert zones_of("us-east-1", ["subnet-1111aaaa", "subnet-2222bbbb"]) == {
        "us-east-1a": "subnet-1111aaaa", "us-east-1b": "subnet-2222bbbb"}
    with pytest.raises(e.CloudHsmInvalidRequestException, match="more than once"):
        zones_of("us-east-1", ["subnet-1111aaaa", "subnet-1111aaaa"])


def test_backup_retention_is_7_to_379_days() -> None:
    assert _retention(None) is None
    assert _retention({"Type": "DAYS", "Value": "7"}) == 7 and _retention({"Type": "DAYS", "Value": "379"}) == 379
    for bad in ("6", "380"):
        with pytest.raises(e.CloudHsmInvalidRequestException, match="7 to 379"):
            _retention({"Type": "DAYS", "Value": bad})
    with pytest.raises(e.CloudHsmInvalidRequestException, match="Value"):
        _retention({"Type": "DAYS"})


def test_tags_reserve_aws_and_stop_at_fifty() -> None:
    assert validate_tags([{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]) == {"a": "2"}
    with pytest.raises(e.CloudHsmTagException, match="aws:"):
        validate_tags([{"Key": "aws:x", "Value": "1"}])
    with pytest.raises(e.CloudHsmTagException, match="50"):
        validate_tags([{"Key": f"k{i}", "Value": ""} for i in range(51)])


def test_pages_and_tokens() -> None:
    items = list(range(7))
    first, token = page(items, None, 3, 25)
    assert first == [0, 1, 2] and token == encode_token(3)
    second, token = page(items, token, 3, 25)
    last, token = page(items, token, 3, 25)
    assert second == [3, 4, 5] and last == [6] and token is None
    with pytest.raises(e.CloudHsmInvalidRequestException, match="NextToken"):
        decode_token("bm90LWEtdG9rZW4=")


def test_a_region_without_a_backup_store_is_refused(tmp_path) -> None:
    regions = Regions("us-east-1", {"us-east-1": str(tmp_path / "east")})
    assert isinstance(regions.store("us-east-1"), BackupStore)
    with pytest.raises(e.CloudHsmInvalidRequestException, match="us-west-2"):
        regions.store("us-west-2")


def test_a_copy_keeps_the_sealed_blob_and_says_where_it_came_from(tmp_path) -> None:
    east, west = BackupStore(tmp_path / "east"), BackupStore(tmp_path / "west")
    meta = east.write(BackupMeta(backup_id=east.new_backup_id(), cluster_id="cluster-abcdefghijk",
                                 cluster_certificate_sha256="ab" * 32), b"sealed bytes", now_ms=1_000)
    copy = east.copy_to(meta.backup_id, west, "us-east-1", now_ms=2_000)
    assert copy.backup_id != meta.backup_id and copy.cluster_id == "" and copy.state == BackupState.CREATE_IN_PROGRESS
    # as on AWS, a copy is CREATE_IN_PROGRESS first: it cannot be read, copied or deleted yet
    with pytest.raises(BackupInvalidStateError, match="CREATE_IN_PROGRESS"):
        west.read_blob(copy.backup_id)
    with pytest.raises(BackupInvalidStateError, match="only a READY backup can be copied"):
        west.copy_to(copy.backup_id, east, "us-west-2")
    with pytest.raises(BackupInvalidStateError, match="only a READY backup can be deleted"):
        west.delete(copy.backup_id)
    copy = west.finish_create(copy.backup_id)
    assert copy.state == BackupState.READY and west.describe(copy.backup_id).state == BackupState.READY
    assert west.finish_create(copy.backup_id) == copy   # once READY, finishing again changes nothing
    assert (copy.source_backup_id, copy.source_cluster_id, copy.source_region) == (
        meta.backup_id, "cluster-abcdefghijk", "us-east-1")
    assert copy.sealed_as == (meta.backup_id, "cluster-abcdefghijk") and meta.sealed_as == copy.sealed_as
    assert west.read_blob(copy.backup_id) == b"sealed bytes"
    assert copy.cluster_certificate_sha256 == meta.cluster_certificate_sha256
    # a copy of the copy still names the blob's original ids
    again = west.copy_to(copy.backup_id, east, "us-west-2", now_ms=3_000)
    assert again.sealed_as == meta.sealed_as
    # a deleted backup is not brought back by a late finish
    west.delete(copy.backup_id, now_ms=4_000)
    assert west.finish_create(copy.backup_id).state == BackupState.PENDING_DELETION


async def test_a_copy_becomes_ready_after_its_time_or_at_the_next_start(tmp_path) -> None:
    regions = Regions("us-east-1", {"us-east-1": str(tmp_path / "east"), "us-west-2": str(tmp_path / "west")})
    east, west = regions.store("us-east-1"), regions.store("us-west-2")
    meta = east.write(BackupMeta(backup_id=east.new_backup_id(), cluster_id="cluster-abcdefghijk"), b"sealed")
    first = east.copy_to(meta.backup_id, west, "us-east-1")
    second = east.copy_to(meta.backup_id, west, "us-east-1")
    plane = SimpleNamespace(regions=regions, settings=ControlPlaneSettings(backup_copy_s=0.01))
    await _finish_copy(plane, "us-west-2", first.backup_id)   # type: ignore[arg-type]
    assert west.describe(first.backup_id).state == BackupState.READY
    assert west.describe(second.backup_id).state == BackupState.CREATE_IN_PROGRESS
    # the process ended before the second's time: the next start finishes it
    finish_copies(plane)   # type: ignore[arg-type]
    assert west.describe(second.backup_id).state == BackupState.READY and west.read_blob(second.backup_id) == b"sealed"
    assert east.describe(meta.backup_id).state == BackupState.READY   # the source is untouched


def test_never_expires_and_states(tmp_path) -> None:
    store = BackupStore(tmp_path)
    meta = store.write(BackupMeta(backup_id=store.new_backup_id(), cluster_id="cluster-abcdefghijk"), b"x",
                       now_ms=1_000)
    assert store.set_never_expires(meta.backup_id, True).never_expires is True
    store.delete(meta.backup_id, now_ms=2_000)
    with pytest.raises(BackupInvalidStateError, match="only a READY backup can be copied"):
        store.copy_to(meta.backup_id, BackupStore(tmp_path / "other"), "us-east-1")

"""What several frontend workers share (kms_frontend/store/changes.py): the change log every write
of a record adds to, the counter that tells the others, and a store's quota bucket."""
import multiprocessing as mp
import time

from kms_frontend.store.changes import ChangeCounter, SharedRateLimiter
from kms_frontend.store.repository import AliasRecord, GrantRecord
from kms_frontend.store.sqlite import SqliteRepository
from tests.unit.kms_frontend.test_frontend_store import key, store


def test_each_write_of_a_record_is_logged_and_raises_the_counter(tmp_path):
    counter = ChangeCounter(tmp_path / "changes")
    with SqliteRepository(tmp_path / "meta.db", changes=counter) as repo:
        s = repo.create_custom_key_store(store())
        k = repo.create_key(key(1))
        repo.update_key(k)
        repo.create_alias(AliasRecord("alias/a", k.key_id, 1, 1))
        repo.create_grant(GrantRecord(grant_id="g" * 64, key_id=k.key_id, grantee_principal="arn:aws:iam::1:root",
                                      operations=("Encrypt",), issuing_account="arn:aws:iam::1:root", creation_date=1))
        repo.delete_grant("g" * 64)
        repo.mark_store_keys_unavailable(s.custom_key_store_id)
        rows, gap = repo.changes_since(0)
        assert not gap
        assert [(kind, ident) for _, kind, ident in rows] == [
            ("store", s.custom_key_store_id), ("key", k.key_id), ("key", k.key_id), ("alias", "alias/a"),
            ("grants", k.key_id), ("grants", k.key_id), ("store_keys", s.custom_key_store_id)]
        assert counter.value == rows[-1][0] == repo.last_change()
        assert repo.changes_since(rows[2][0])[0] == rows[3:]
        repo.delete_key(k.key_id)
        assert repo.changes_since(rows[-1][0])[0][-1][1:] == ("key", k.key_id)
        assert repo.prune_changes(keep=2) > 0
        assert repo.changes_since(1)[1]  # a reader further behind than what is kept must reload everything


def test_one_process_logs_nothing(tmp_path):
    with SqliteRepository(tmp_path / "meta.db") as repo:
        repo.create_custom_key_store(store())
        assert repo.changes_since(0) == ([], False)


def test_the_counter_never_moves_back(tmp_path):
    a, b = ChangeCounter(tmp_path / "c"), ChangeCounter(tmp_path / "c")
    a.advance(7)
    b.advance(5)  # a writer that committed earlier but publishes later
    assert a.value == b.value == 7


def _take(path: str, rate: int, seconds: float, ready: mp.Queue, go, out: mp.Queue) -> None:
    limiter, allowed = SharedRateLimiter(path, rate), 0
    ready.put(True)
    go.wait(30)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        allowed += limiter.allow()
    out.put(allowed)


def test_the_quota_bucket_is_shared_by_processes(tmp_path):
    rate, seconds = 200, 1.5
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_take, args=(str(tmp_path / "q"), rate, seconds, ready, go, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)  # both hold the bucket: they draw from it over the same window
    go.set()
    total = sum(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join()
    # one second's burst, then the rate, for the two together (not twice it)
    assert rate * seconds * 0.9 <= total <= rate + rate * seconds * 1.1, total

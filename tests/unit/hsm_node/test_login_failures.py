"""Failed logins counted across nodes merge without loss (in-process nodes, replication
by hand): each node counts in its own record, so concurrent failures on two nodes that
have not heard of each other add up once they do; a reset starts a new count."""
from __future__ import annotations

import pytest

from hsm_node import records as rec
from hsm_node.errors import PermissionDenied, Unauthenticated
from hsm_node.replication import Replicator
from hsm_node.storage_sealing import hash_password
from hsm_node.users import UserRules
from tests.unit.hsm_node.test_replication_apply import make_pair, oplog

PW = "Password-1"


async def exchange(a, b) -> None:
    await Replicator(b).apply(oplog(a))
    await Replicator(a).apply(oplog(b))


async def pair_with_user(tmp_path):
    a, b = await make_pair(tmp_path)
    await a.write([("member", b.node_id, b.self_member()),
                   ("user", "split", rec.UserRecord("split", 40, "CU", hash_password(PW))),
                   ("login_reset", "split", rec.LoginResetRecord("split"))])
    await exchange(a, b)
    return a, b


async def fail(rules: UserRules, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Unauthenticated):
            await rules.login("CU", "split", "Wrong-Pass-1")


async def test_failures_counted_apart_on_two_nodes_add_up_and_lock_both(tmp_path):
    a, b = await pair_with_user(tmp_path)
    ua, ub = UserRules(a), UserRules(b)
    await fail(ua, 3)   # a partition: neither node sees the other's failures yet
    await fail(ub, 3)
    assert (a.records.login_failures("split"), b.records.login_failures("split")) == (3, 3)
    await exchange(a, b)
    assert (a.records.login_failures("split"), b.records.login_failures("split")) == (6, 6)
    for rules in (ua, ub):
        with pytest.raises(PermissionDenied):
            await rules.login("CU", "split", PW)
    assert a.records.consistency_hash() == b.records.consistency_hash()

    await exchange(a, b)  # replaying everything changes nothing
    assert (a.records.login_failures("split"), b.records.login_failures("split")) == (6, 6)
    a.close()
    b.close()


async def test_a_success_resets_the_count_everywhere_but_keeps_later_failures(tmp_path):
    a, b = await pair_with_user(tmp_path)
    ua, ub = UserRules(a), UserRules(b)
    await fail(ub, 4)
    await exchange(a, b)
    await ua.login("CU", "split", PW)      # the run of failures ends...
    await exchange(a, b)
    assert (a.records.login_failures("split"), b.records.login_failures("split")) == (0, 0)
    await fail(ub, 2)                      # ...and b counts afresh from the reset
    await exchange(a, b)
    assert (a.records.login_failures("split"), b.records.login_failures("split")) == (2, 2)
    a.close()
    b.close()

"""The CloudHSM v2 control plane: clusters, HSMs (real node processes) and backups, served on the
frontend's AWS endpoint (``BaldrApiService``, signing name ``cloudhsm``) so that boto3's
``cloudhsmv2`` client and ``aws cloudhsmv2`` work unchanged.

:meth:`ControlPlane.call` is its one entry point, as :meth:`Services.call
<kms_frontend.service.frontend.Services.call>` is KMS's: the request is checked against botocore's
``cloudhsmv2`` model (every violation in one ValidationException), then authorised
(:meth:`ControlPlane.authorize`, the hook for ``cloudhsm:*`` IAM evaluation), then run; an
operation that changes state runs to its end even if the caller hangs up.

Where things live: records in ``<data dir>/cloudhsm.db`` (:mod:`.store`); backups in each
Region's backup store (:mod:`backup_store`); nodes wherever the provisioner put them
(:mod:`.provisioners`); what is true now, in the cluster view (:mod:`.view`) that KMS reads too.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.loaders import Loader

from backup_store import BackupStore

from ..cluster.appliance import ApplianceClient, ApplianceError
from ..cluster.directory import ClusterDirectory
from ..service.frontend import run_to_end
from ..service.model import Params, ServiceModel
from . import errors as e
from . import records as r
from .provisioners import Provisioner, Static
from .shapes import Shape
from .store import ControlPlaneStore
from .view import ClusterView

log = logging.getLogger("kms_frontend.controlplane")


def cloudhsm_model() -> ServiceModel:
    """botocore's ``cloudhsmv2`` model, with the same validator as KMS's."""
    return ServiceModel(Loader().load_service_model("cloudhsmv2", "service-2"), extra=None)


@dataclass
class Regions:
    """The Regions this control plane serves, each with its own backup store (a directory, opened
    on first use). KMS lives in ``home``."""
    home: str
    stores: dict[str, str] = field(default_factory=dict)  # Region -> backup store directory
    _open: dict[str, BackupStore] = field(default_factory=dict)

    def store(self, region: str) -> BackupStore:
        found = self._open.get(region)
        if found is None:
            path = self.stores.get(region)
            if path is None:
                raise e.invalid(f"Region {region} has no backup store here; this endpoint serves "
                                f"{', '.join(sorted(self.stores)) or 'no Region'} (--cloudhsm-region REGION=DIR).")
            found = self._open[region] = BackupStore(path)
        return found


@dataclass
class ControlPlaneSettings:
    account_id: str = "111122223333"
    # An HSM that does not answer for this long is replaced by a new one; 0 turns replacement off
    # (chaos runs that kill nodes on purpose). A cluster tag REPLACEMENT_TAG overrides it.
    replace_after_s: float = 300.0
    max_hsms_per_cluster: int = 28
    # How long a CopyBackupToRegion copy stays CREATE_IN_PROGRESS (AWS takes minutes; code that
    # uses a copy must wait for READY, so it should see the wait here too)
    backup_copy_s: float = 2.0


REPLACEMENT_TAG = "kms-cloudhsm:replace-failed-hsm-after"


class Authorizer(Protocol):
    """Who may call what: ``caller`` runs ``operation`` (IAM action ``cloudhsm:<Operation>``) on
    ``resources`` (ARNs, or ``*``). Raises AccessDeniedException to refuse. The frontend passes its
    one evaluator (``Authorizer.authorize_identity`` of ``service/authorization.py``)."""

    def __call__(self, caller: Any, operation: str, action: str, resources: list[str], params: Params) -> None: ...


def allow_all(caller: Any, operation: str, action: str, resources: list[str], params: Params) -> None:
    """For tests that drive the control plane without a frontend: everything is allowed."""


@dataclass(frozen=True)
class Operation:
    handler: Callable[[ControlPlane, Params, str], Awaitable[Shape]]
    changes_state: bool = False


class ControlPlane:
    def __init__(self, store: ControlPlaneStore, regions: Regions, directory: ClusterDirectory,
                 appliance: ApplianceClient, provisioners: dict[str, Provisioner], default_provisioner: str,
                 settings: ControlPlaneSettings | None = None, clock: Callable[[], float] = time.time,
                 authorizer: Authorizer = allow_all) -> None:
        from .operations import OPERATIONS  # the table imports the families, which import this module
        self.store, self.regions, self.directory, self.appliance = store, regions, directory, appliance
        self.provisioners = {Static.name: Static(), **provisioners}
        if default_provisioner not in self.provisioners:
            raise ValueError(f"unknown provisioner {default_provisioner!r}: expected one of "
                             f"{', '.join(sorted(self.provisioners))}")
        self.default_provisioner = default_provisioner
        self.settings = settings or ControlPlaneSettings()
        self.clock, self.authorizer = clock, authorizer
        self.model = cloudhsm_model()
        self.operations: dict[str, Operation] = OPERATIONS
        self.view = ClusterView(self)
        directory.catalog = self.view
        directory.on_refresh.append(self._observe)
        self._csr: dict[str, str] = {}          # cluster id -> its uninitialised HSM's CSR
        self._tasks: set[asyncio.Task] = set()
        self._workers: dict[str, asyncio.Task] = {}  # hsm/cluster id -> the task moving it along
        self._sync_task: asyncio.Task | None = None
        self._sync_again = False
        self.lock = asyncio.Lock()               # one change of clusters/HSMs at a time
        # Several frontend workers: only the leader runs the control plane (its API, its background
        # work, the nodes it starts); a following worker reads its records (api/cloudhsm_forward.py).
        self.following = False

    # ------------------------------------------------------------ the entry point

    def offers(self, operation: str) -> bool:
        return operation in self.operations

    async def call(self, operation: str, params: Params, region: str, caller: Any = None) -> Shape:
        """Run one ``cloudhsmv2`` operation by its AWS name, for ``region`` (the request's
        credential scope): model checks, authorisation, then its rules."""
        op = self.operations[operation]
        self.model.validate(operation, params)
        if region not in self.regions.stores:
            raise e.invalid(f"Region {region} is not served by this endpoint (it serves "
                            f"{', '.join(sorted(self.regions.stores))}).")
        self.authorize(caller, operation, params, region)
        if op.changes_state:
            return await run_to_end(op.handler(self, params, region))
        return await op.handler(self, params, region)

    def authorize(self, caller: Any, operation: str, params: Params, region: str) -> None:
        """IAM: ``self.authorizer`` (the frontend's one evaluator) judges ``cloudhsm:<Operation>`` on
        the ARNs the request names, as account-level KMS operations are judged in ``Services.call``."""
        resources = [self.arn(region, kind, params[member]) for member, kind in
                     (("ClusterId", "cluster"), ("BackupId", "backup")) if isinstance(params.get(member), str)]
        if isinstance(params.get("ResourceArn"), str):
            resources.append(params["ResourceArn"])
        self.authorizer(caller, operation, f"cloudhsm:{operation}", resources or ["*"], params)

    # ------------------------------------------------------------ shared helpers

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def arn(self, region: str, kind: str, resource_id: str) -> str:
        return f"arn:aws:cloudhsm:{region}:{self.settings.account_id}:{kind}/{resource_id}"

    def cluster(self, cluster_id: str, region: str) -> r.ClusterRecord:
        rec = self.store.clusters.get(cluster_id)
        if rec is None or rec.region != region or (rec.state == r.DELETED and
                                                   self.now_ms() - rec.deleted_ms > 7 * 86_400_000):
            raise e.cluster_not_found(cluster_id)
        return rec

    def provisioner(self, name: str) -> Provisioner:
        return self.provisioners.get(name) or self.provisioners[Static.name]

    def spawn(self, coro: Awaitable[Any], key: str = "") -> None:
        """Run background work (an HSM being created or deleted) that outlives the request."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if key:
            self._workers[key] = task
            task.add_done_callback(lambda t: self._workers.pop(key, None) if self._workers.get(key) is t else None)

    def busy(self, key: str) -> bool:
        task = self._workers.get(key)
        return task is not None and not task.done()

    def csr_of(self, rec: r.ClusterRecord) -> str:
        return self._csr.get(rec.cluster_id, "") if rec.state in (r.UNINITIALIZED, r.INITIALIZE_IN_PROGRESS) else ""

    def forget_csr(self, cluster_id: str) -> None:
        self._csr.pop(cluster_id, None)

    def anchor(self, cluster_id: str) -> str:
        rec = self.store.clusters.get(cluster_id)
        info = self.directory.clusters.get(cluster_id)
        return (rec.trust_anchor_pem if rec is not None and rec.trust_anchor_pem else "") or \
            (info.trust_anchor_pem if info is not None else "")

    def active_members(self, cluster_id: str, exclude: str = "") -> list[str]:
        """Endpoints of the cluster's HSMs that answer as its ACTIVE members now (any Region)."""
        probes = self.directory.probes
        info = self.directory.clusters.get(cluster_id)
        endpoints = [h.endpoint for h in self.store.hsms_of(cluster_id) if h.endpoint and h.state == r.ACTIVE]
        endpoints += [m for m in (info.member_endpoints if info is not None else []) if m not in endpoints]
        return [ep for ep in endpoints if ep != exclude and (p := probes.get(ep)) is not None and p.reachable
                and p.cluster_id == cluster_id and p.state == "ACTIVE"]

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Re-adopt every HSM's node (start again those that are not running), and resume the
        work a previous run left half done (HSMs being created or deleted, a cluster initialising)."""
        from .backups import finish_copies
        from .hsms import resume_all, run_replacement
        await resume_all(self)
        finish_copies(self)
        loop = asyncio.get_running_loop()
        self._tasks.add(loop.create_task(run_replacement(self)))

    async def lead(self) -> None:
        """A following worker becomes the leader (the previous one ended): the records as it left
        them, then what :meth:`start` does."""
        self.store.reload_if_changed()
        self.following = False
        await self.start()

    async def stop(self) -> None:
        """Stop the control plane's own work. HSM nodes keep running (a restart re-adopts them)."""
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for p in self.provisioners.values():
            await p.close()
        self.store.close()

    # ------------------------------------------------------------ after each discovery round

    def _observe(self) -> None:
        """Called by discovery after every probe round: adopt clusters and HSMs found there, and
        record transitions the nodes made themselves (activation). A following worker records
        nothing: the leader does, and its records reach this one (:meth:`.view.ClusterView.endpoints`)."""
        if self.following:
            return
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_again = True
            return
        with contextlib.suppress(RuntimeError):  # no running loop (a test's synchronous refresh)
            self._sync_task = asyncio.get_running_loop().create_task(self.sync())
            self._tasks.add(self._sync_task)
            self._sync_task.add_done_callback(self._tasks.discard)

    async def sync(self) -> None:
        from .clusters import sync_from_discovery
        while True:
            self._sync_again = False
            try:
                await sync_from_discovery(self)
            except Exception:
                log.exception("control plane sync failed", extra={"event": "cloudhsm_sync_error"})
            if not self._sync_again:
                return

    async def refresh(self, max_age_s: float = 0.0) -> None:
        """A fresh probe round (unless the last is younger than ``max_age_s``), then the records follow it."""
        if max_age_s <= 0 or time.monotonic() - self.directory.last_refresh > max_age_s:
            await self.directory.refresh()
        if self._sync_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._sync_task)

    async def node_status(self, endpoint: str) -> Any:
        try:
            return await self.appliance.status(endpoint)
        except ApplianceError:
            return None


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "offset" and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise e.invalid("The NextToken is not valid: pass the NextToken of the previous response unchanged.")


def page(items: list[Any], token: str | None, max_results: int | None, default: int) -> tuple[list[Any], str | None]:
    start = decode_token(token)
    size = max_results or default
    chunk = items[start:start + size]
    more = start + size < len(items)
    return chunk, encode_token(start + size) if more else None

"""All operation families of the frontend, built once and shared by the adapters."""
from __future__ import annotations

from ..cluster.connector import Connector
from ..cluster.directory import ClusterDirectory
from .aliases import Aliases
from .catalog import Catalog
from .context import Context
from .crypto import Crypto
from .key_stores import KeyStores
from .keys import Keys
from .policies import Policies
from .tags import Tags


class Services:
    def __init__(self, ctx: Context, directory: ClusterDirectory, connector: Connector) -> None:
        self.ctx, self.directory, self.connector = ctx, directory, connector
        self.catalog = Catalog(ctx)
        self.key_stores = KeyStores(ctx, directory, connector)
        self.keys = Keys(ctx, self.catalog, directory, connector)
        self.aliases = Aliases(ctx, self.catalog)
        self.tags = Tags(self.keys, self.catalog)
        self.policies = Policies(self.keys, self.catalog)
        self.crypto = Crypto(ctx, self.catalog, connector)
        connector.on_keys_changed = self.catalog.reload_store

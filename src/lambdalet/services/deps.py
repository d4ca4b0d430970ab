"""What the resource modules need, bundled once by LambdaService (no globals below this line)."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lambdalet.services.runtimes import RuntimeCatalogue, default_catalogue
from lambdalet.store.db import Database

DEFAULT_CONCURRENT_EXECUTIONS = 1000


@dataclass
class Deps:
    db: Database
    keyring: Any                      # crypto.keyring.Keyring: seal/open/derive_key
    blobs: Any                        # blobs.store.BlobStore: put/get
    settings: Any                     # config.Settings
    runtimes: RuntimeCatalogue = field(default_factory=default_catalogue)
    clock: Callable[[], float] = time.time
    # invoke.credentials.ExecutionRoles: check(ctx, function_arn, role_arn) for Role (PassRole + trust);
    # None (unit harnesses) checks the ARN's syntax only.
    roles: Any = None
    # kms.FunctionKeys: checks a KMSKeyArn when it is configured; None (unit harnesses) checks syntax only.
    kms: Any = None
    # iam.authz.Authorizer: deploy-time checks (a function's Layers need lambda:GetLayerVersion on each,
    # services/layers.py); None (unit harnesses) allows the caller's own layers only.
    authorizer: Any = None
    # services.states.Transitions: completes Pending -> Active and InProgress -> Successful; None in
    # harnesses that build Deps by hand (transitions then complete only when the function is read).
    transitions: Any = None

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).date()

    @property
    def concurrent_executions_limit(self) -> int:
        # Settings belongs to the lead; until it has this field, AWS's default account limit applies.
        return int(getattr(self.settings, "concurrent_executions_limit", DEFAULT_CONCURRENT_EXECUTIONS))

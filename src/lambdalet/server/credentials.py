"""The administrator's credentials for `lambdalet env`: unsealed with the master key in the data
dir, so only someone who can read that 0600 file can print them."""
from __future__ import annotations

from lambdalet.config import Settings
from lambdalet.iam import AdminCredentials, IdentityStore
from lambdalet.server.platform import open_keyring
from lambdalet.store.db import open_database


def read_admin_credentials(settings: Settings) -> AdminCredentials:
    db = open_database(settings.db_url)
    try:
        creds = IdentityStore(db, open_keyring(settings)).admin_credentials()
    finally:
        db.close()
    if creds is None:
        raise SystemExit(f"no administrator key in {settings.data_dir}: start `lambdalet serve` once first")
    return creds

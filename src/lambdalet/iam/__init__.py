"""Identities: accounts and access keys (policies, roles and STS follow in a later issue)."""
from lambdalet.iam.identity import AdminCredentials, IdentityStore

__all__ = ["AdminCredentials", "IdentityStore"]

"""Secrets at rest: master key file, envelope encryption, key ring and signed tokens."""
from lambdalet.crypto.envelope import open_sealed, seal, sealed_key_id
from lambdalet.crypto.errors import CryptoError, DecryptionError, InsecureKeyFile, InvalidToken
from lambdalet.crypto.keyring import (PLATFORM_KEY_ID, FileKeyMaterialStore, KeyMaterialStore, Keyring,
                                      MemoryKeyMaterialStore)
from lambdalet.crypto.master import load_or_create_master_key
from lambdalet.crypto.tokens import make_token, read_token

__all__ = [
    "CryptoError", "DecryptionError", "FileKeyMaterialStore", "InsecureKeyFile", "InvalidToken",
    "KeyMaterialStore", "Keyring", "MemoryKeyMaterialStore", "PLATFORM_KEY_ID", "load_or_create_master_key",
    "make_token", "open_sealed", "read_token", "seal", "sealed_key_id",
]

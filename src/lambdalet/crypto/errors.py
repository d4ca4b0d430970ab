"""Crypto errors. Subclass ValueError so callers that treat "bad input" generically still catch them."""
from __future__ import annotations


class CryptoError(ValueError):
    """Base class for everything this package raises on purpose."""


class DecryptionError(CryptoError):
    """Ciphertext was tampered with, truncated, bound to other AAD, or sealed under an unknown key."""


class InvalidToken(CryptoError):
    """A signed token is malformed, forged or expired."""


class InsecureKeyFile(CryptoError):
    """The master key file is group/other accessible, not a regular file, or has the wrong length."""

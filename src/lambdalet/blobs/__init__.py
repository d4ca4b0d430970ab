"""Encrypted content-addressed storage for code packages."""
from lambdalet.blobs.store import BlobNotFound, BlobRef, BlobStore

__all__ = ["BlobNotFound", "BlobRef", "BlobStore"]

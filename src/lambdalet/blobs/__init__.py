"""Encrypted content-addressed storage for code packages."""
from lambdalet.blobs.store import BlobNotFound, BlobRef, BlobSealer, BlobStore, PlatformSealer

__all__ = ["BlobNotFound", "BlobRef", "BlobSealer", "BlobStore", "PlatformSealer"]

"""The cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext),
GenerateRandom. Ciphertexts are keyring envelopes under the key's KEK, AAD = KMS's domain tag plus
the canonical EncryptionContext (see service.py).
"""
from __future__ import annotations

import os
from typing import Any

from lambdalet.crypto.envelope import sealed_key_id
from lambdalet.crypto.errors import DecryptionError
from lambdalet.kms import condition_keys as CK
from lambdalet.kms import errors as E
from lambdalet.kms.access import KeyAccess
from lambdalet.kms.records import (
    MAX_DATA_KEY_BYTES,
    MAX_PLAINTEXT,
    SYMMETRIC_DEFAULT,
    Key,
    _string,
    context_aad,
    key_id_of_kek,
)
from lambdalet.models.context import RequestContext


class CryptoOperations(KeyAccess):
    # ------------------------------------------------------------ cryptography
    def _seal(self, key: Key, plaintext: bytes, encryption_context: dict | None) -> bytes:
        self._require_usable(key)
        return self._keyring.seal(plaintext, aad=context_aad(encryption_context), key_id=key.kek_id)

    def encrypt(self, ctx: RequestContext, params: dict) -> dict:
        plaintext = _string(params, "Plaintext")
        if not 1 <= len(plaintext) <= MAX_PLAINTEXT:
            raise E.ValidationException(
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have "
                f"length less than or equal to {MAX_PLAINTEXT} and greater than or equal to 1")
        self._algorithm(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:Encrypt", cross_account=True,
                        keys=CK.cryptographic(params.get("EncryptionContext"), params.get("EncryptionAlgorithm")))
        self._require_usable(key)
        self._dry_run(params)
        blob = self._seal(key, plaintext, params.get("EncryptionContext"))
        return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": SYMMETRIC_DEFAULT}

    def _open(self, ctx: RequestContext, blob: Any, encryption_context: dict | None, key_ref: Any,
              action: str, algorithm: str | None = None) -> tuple[Key, bytes]:
        if not isinstance(blob, (bytes, bytearray)) or not blob:
            raise E.ValidationException("CiphertextBlob must be 1 to 6144 bytes.")
        try:
            key_id = key_id_of_kek(sealed_key_id(bytes(blob)))
        except DecryptionError:
            key_id = None
        if key_id is None:
            raise E.InvalidCiphertextException("")
        with self._db.read() as conn:
            row = self._row(conn, key_id)
            named = self._resolve(conn, ctx, key_ref, cross_account=True) if key_ref is not None else None
        key = Key.of(row) if row is not None else None
        if key is None or key.region != ctx.region or key.deleted(self._clock()):
            if named is not None:
                raise E.IncorrectKeyException("The key ID in the request does not identify a KMS key that can "
                                              "perform this operation.")
            raise E.InvalidCiphertextException("")
        if named is not None and named.id != key.id:
            raise E.IncorrectKeyException("The key ID in the request does not identify a KMS key that can "
                                          "perform this operation.")
        # The request's context is the one the ciphertext must be bound to, so conditions see the real one.
        self._authorize(ctx, key, action, {**CK.request_alias(key_ref),
                                           **CK.cryptographic(encryption_context, algorithm)})
        self._require_usable(key)
        try:
            return key, self._keyring.open(bytes(blob), aad=context_aad(encryption_context))
        except DecryptionError:
            raise E.InvalidCiphertextException("") from None

    def decrypt(self, ctx: RequestContext, params: dict) -> dict:
        self._algorithm(params)
        if params.get("Recipient"):
            raise E.UnsupportedOperationException("lambdalet does not support Nitro Enclaves recipients.")
        key, plaintext = self._open(ctx, params.get("CiphertextBlob"), params.get("EncryptionContext"),
                                    params.get("KeyId"), "kms:Decrypt", params.get("EncryptionAlgorithm"))
        self._dry_run(params)
        return {"KeyId": key.arn, "Plaintext": plaintext, "EncryptionAlgorithm": SYMMETRIC_DEFAULT}

    def re_encrypt(self, ctx: RequestContext, params: dict) -> dict:
        self._algorithm(params, "SourceEncryptionAlgorithm")
        self._algorithm(params, "DestinationEncryptionAlgorithm")
        source, plaintext = self._open(ctx, params.get("CiphertextBlob"), params.get("SourceEncryptionContext"),
                                       params.get("SourceKeyId"), "kms:ReEncryptFrom",
                                       params.get("SourceEncryptionAlgorithm"))
        dest = self._key(ctx, _string(params, "DestinationKeyId"), "kms:ReEncryptTo", cross_account=True,
                         keys=CK.cryptographic(params.get("DestinationEncryptionContext"),
                                               params.get("DestinationEncryptionAlgorithm")))
        self._require_usable(dest)
        self._dry_run(params)
        blob = self._seal(dest, plaintext, params.get("DestinationEncryptionContext"))
        return {"CiphertextBlob": blob, "SourceKeyId": source.arn, "KeyId": dest.arn,
                "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT, "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT}

    @staticmethod
    def _data_key_size(params: dict) -> int:
        spec = params.get("KeySpec")
        n: Any = params.get("NumberOfBytes")
        if (spec is None) == (n is None):
            raise E.ValidationException("Please specify either number of bytes or key spec.")
        if spec is not None:
            sizes = {"AES_256": 32, "AES_128": 16}
            if spec not in sizes:
                raise E.ValidationException(f"1 validation error detected: Value '{spec}' at 'keySpec' failed "
                                            "to satisfy constraint: Member must satisfy enum value set: "
                                            "[AES_256, AES_128]")
            return sizes[spec]
        if not 1 <= n <= MAX_DATA_KEY_BYTES:
            raise E.ValidationException(f"1 validation error detected: Value '{n}' at 'numberOfBytes' failed "
                                        "to satisfy constraint: Member must have value between 1 and "
                                        f"{MAX_DATA_KEY_BYTES}")
        return n

    def generate_data_key(self, ctx: RequestContext, params: dict) -> dict:
        if params.get("Recipient"):
            raise E.UnsupportedOperationException("lambdalet does not support Nitro Enclaves recipients.")
        size = self._data_key_size(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:GenerateDataKey", cross_account=True,
                        keys=CK.cryptographic(params.get("EncryptionContext")))
        self._require_usable(key)
        self._dry_run(params)
        plaintext = os.urandom(size)
        return {"CiphertextBlob": self._seal(key, plaintext, params.get("EncryptionContext")),
                "Plaintext": plaintext, "KeyId": key.arn}

    def generate_data_key_without_plaintext(self, ctx: RequestContext, params: dict) -> dict:
        size = self._data_key_size(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:GenerateDataKeyWithoutPlaintext", cross_account=True,
                        keys=CK.cryptographic(params.get("EncryptionContext")))
        self._require_usable(key)
        self._dry_run(params)
        return {"CiphertextBlob": self._seal(key, os.urandom(size), params.get("EncryptionContext")),
                "KeyId": key.arn}

    def generate_random(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize_account(ctx, "kms:GenerateRandom")
        if params.get("CustomKeyStoreId") or params.get("Recipient"):
            raise E.UnsupportedOperationException("lambdalet does not support custom key stores or recipients.")
        n = params.get("NumberOfBytes")
        if n is None or not 1 <= n <= MAX_DATA_KEY_BYTES:
            raise E.ValidationException(f"NumberOfBytes must be between 1 and {MAX_DATA_KEY_BYTES}.")
        return {"Plaintext": os.urandom(n)}

"""KMS (a subset): customer keys whose material is a keyring KEK wrapped by the master key;
Encrypt/Decrypt/GenerateDataKey, aliases, key states and key policies; and the keys Lambda uses to
seal a function's environment variables (KMSKeyArn) and its code (SourceKMSKeyArn)."""
from lambdalet.kms.lambda_keys import FunctionKeys
from lambdalet.kms.service import KmsBinding, KmsService

__all__ = ["FunctionKeys", "KmsBinding", "KmsService"]

"""Server-side validation of configuration members, worded like AWS.

botocore validates types and the ranges it knows on the client, but raw clients (and botocore
with parameter_validation off) can send anything, so every rule is checked again here. Real AWS
limits are narrower than some model ranges (MemorySize 10240, Timeout 900): these are AWS's.
"""
from __future__ import annotations

import json
import re

from lambdalet.models.errors import AwsError, InvalidParameterValueException, constraint_text, validation_error

MEMORY_MIN, MEMORY_MAX = 128, 10240
TIMEOUT_MIN, TIMEOUT_MAX = 1, 900
EPHEMERAL_MIN, EPHEMERAL_MAX = 512, 10240
DESCRIPTION_MAX = 256
HANDLER_MAX = 128
ENV_MAX_BYTES = 4096

ROLE_PATTERN = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
KMS_PATTERN = r"(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()"
ENV_KEY_PATTERN = r"[a-zA-Z]([a-zA-Z0-9_])+"        # as AWS quotes it in errors
_ENV_KEY_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")  # what AWS enforces: one-letter names are accepted
ARN_PATTERN = r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)"
MAX_LAYERS = 5
LAYER_VERSION_ARN_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:"
                             r"\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)")

# Set by the Lambda runtime inside every environment; AWS refuses them in Environment.Variables.
RESERVED_ENV_KEYS = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})


def constraint_error(value, field: str, rule: str) -> AwsError:
    """AWS's ValidationException for one member that breaks one constraint (the protocol layer
    checks the model's; these are the checks it cannot express, or raw callers bypass)."""
    return validation_error([constraint_text(value, field, rule)])


def _int_range(value, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint_error(value, field, "Member must be an integer")
    if value < lo:
        raise constraint_error(value, field, f"Member must have value greater than or equal to {lo}")
    if value > hi:
        raise constraint_error(value, field, f"Member must have value less than or equal to {hi}")
    return value


def _string(value, field: str, max_len: int, min_len: int = 0) -> str:
    if not isinstance(value, str):
        raise constraint_error(value, field, "Member must be a string")
    if len(value) < min_len:
        raise constraint_error(value, field, f"Member must have length greater than or equal to {min_len}")
    if len(value) > max_len:
        raise constraint_error(value, field, f"Member must have length less than or equal to {max_len}")
    return value


def _pattern(value: str, field: str, pattern: str) -> str:
    if not re.fullmatch(pattern, value):
        raise constraint_error(value, field, f"Member must satisfy regular expression pattern: {pattern}")
    return value


def memory_size(value) -> int:
    return _int_range(value, "memorySize", MEMORY_MIN, MEMORY_MAX)


def timeout(value) -> int:
    return _int_range(value, "timeout", TIMEOUT_MIN, TIMEOUT_MAX)


def handler(value) -> str:
    _string(value, "handler", HANDLER_MAX)
    return _pattern(value, "handler", r"[^\s]+")


def role(value) -> str:
    _string(value, "role", 10000)
    return _pattern(value, "role", ROLE_PATTERN)


def description(value) -> str:
    return _string(value, "description", DESCRIPTION_MAX)


def kms_key_arn(value) -> str:
    _string(value, "kMSKeyArn", 10000)
    return _pattern(value, "kMSKeyArn", KMS_PATTERN)


def ephemeral_storage(value) -> dict:
    if not isinstance(value, dict) or "Size" not in value:
        raise InvalidParameterValueException("EphemeralStorage must contain Size (MB, 512-10240).")
    return {"Size": _int_range(value["Size"], "ephemeralStorage.size", EPHEMERAL_MIN, EPHEMERAL_MAX)}


def tracing_config(value) -> dict:
    mode = (value or {}).get("Mode", "PassThrough") if isinstance(value, dict) else value
    if mode not in ("Active", "PassThrough"):
        raise constraint_error(mode, "tracingConfig.mode", "Member must satisfy enum value set: [Active, PassThrough]")
    return {"Mode": mode}


def architectures(value) -> list[str]:
    if not isinstance(value, list) or len(value) < 1:
        raise constraint_error(value, "architectures", "Member must have length greater than or equal to 1")
    if len(value) > 1:
        raise constraint_error("[" + ", ".join(map(str, value)) + "]", "architectures",
                               "Member must have length less than or equal to 1")
    if value[0] not in ("x86_64", "arm64"):
        raise constraint_error("[" + str(value[0]) + "]", "architectures",
                               "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]")
    return [value[0]]


def environment(value) -> dict[str, str]:
    """Environment {Variables: {...}} -> the variables, checked as AWS checks them."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameterValueException("Environment must be an object with a Variables map.")
    variables = value.get("Variables") or {}
    if not isinstance(variables, dict):
        raise InvalidParameterValueException("Environment.Variables must be a map of strings.")
    for k, v in variables.items():
        if not isinstance(k, str) or not _ENV_KEY_RE.fullmatch(k):
            # Never echo the variables themselves: the names are marked sensitive in the model.
            raise validation_error([constraint_text(
                variables, "environment.variables", "Map keys must satisfy constraint: "
                f"[Member must satisfy regular expression pattern: {ENV_KEY_PATTERN}]", sensitive=True)])
        if not isinstance(v, str):
            raise InvalidParameterValueException("Environment variable values must be strings.")
    reserved = sorted(k for k in variables if k in RESERVED_ENV_KEYS)
    if reserved:
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment variables you have "
            "provided contains reserved keys that are currently not supported for modification. Reserved keys used "
            f"in this request: {', '.join(reserved)}")
    measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode("utf-8")) > ENV_MAX_BYTES:
        # AWS echoes the measured string; it only goes back to the caller who sent it.
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment variables you have "
            f"provided exceeded the 4KB limit. String measured: {measured}")
    return dict(variables)


def layer_version_arns(value) -> list[str]:
    """Layers (Create/UpdateFunctionConfiguration): up to 5 layer version ARNs, in order. Whether
    they exist and the caller may use them is services/layers.py's business."""
    if not isinstance(value, list):
        raise constraint_error(value, "layers", "Member must be a list")
    if len(value) > MAX_LAYERS:
        raise InvalidParameterValueException(f"Cannot reference more than {MAX_LAYERS} layers.")
    for arn in value:
        if not isinstance(arn, str) or not 1 <= len(arn) <= 2048 or not re.fullmatch(LAYER_VERSION_ARN_PATTERN, arn):
            raise constraint_error("[" + ", ".join(map(str, value)) + "]", "layers",
                                   "Member must satisfy constraint: [Member must have length less than or equal to "
                                   "2048, Member must have length greater than or equal to 1, Member must satisfy "
                                   f"regular expression pattern: {LAYER_VERSION_ARN_PATTERN}, Member must not be null]")
    return list(value)


def target_arn(value, field: str) -> str:
    _string(value, field, 10000)
    if value == "":
        return value
    return _pattern(value, field, ARN_PATTERN)


def boolean(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise constraint_error(value, field, "Member must be a boolean")
    return value


def revision_id(value) -> str | None:
    if value is None:
        return None
    return _string(value, "revisionId", 128)

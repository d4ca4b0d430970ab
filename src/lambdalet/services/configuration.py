"""Function configuration: validate the settable members and merge them into the stored config.

The stored config (function_versions.config) is a JSON dict keyed by AWS member names, holding
only non-secret settings; environment variables are returned separately so they can be sealed.
Members lambdalet cannot honour are refused rather than silently ignored.
"""
from __future__ import annotations

import datetime as dt
import re

from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.services import tenancy, validation as v
from lambdalet.services.runtimes import RuntimeCatalogue

# The runtimes AWS documents SnapStart for (Java 11+, Python 3.12+, .NET 8+).
SNAPSTART_RUNTIMES = frozenset({"java11", "java17", "java21", "java25", "python3.12", "python3.13", "python3.14",
                                "dotnet8", "dotnet10"})
LOG_GROUP_RE = re.compile(r"[\.\-_/#A-Za-z0-9]{1,512}")
APP_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")

# Members of Create/UpdateFunctionConfiguration that lambdalet does not implement.
_UNSUPPORTED = {
    "ImageConfig": "container images are not supported (PackageType Zip only)",
    "CapacityProviderConfig": "capacity providers are not supported",
    "DurableConfig": "durable functions are not supported",
    "RuntimeConfig": "runtime configuration is not supported",
    "AcceleratorConfig": "accelerators are not supported",
    "PublishTo": "PublishTo is not supported",
}


def defaults(name: str) -> dict:
    return {
        "Runtime": None, "Role": None, "Handler": None, "Description": "", "Timeout": 3, "MemorySize": 128,
        "TracingConfig": {"Mode": "PassThrough"}, "Architectures": ["x86_64"], "EphemeralStorage": {"Size": 512},
        "SnapStart": {"ApplyOn": "None"}, "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
        "PackageType": "Zip",
    }


def refuse_unsupported(params: dict) -> None:
    for member, why in _UNSUPPORTED.items():
        if params.get(member) not in (None, {}, ""):
            raise InvalidParameterValueException(f"lambdalet does not support {member}: {why}.")


def _vpc(value) -> None:
    if not isinstance(value, dict):
        raise InvalidParameterValueException("VpcConfig must be an object.")
    if value.get("SubnetIds") or value.get("SecurityGroupIds"):
        raise InvalidParameterValueException(
            "lambdalet does not support VPC configuration: functions run with loopback-only networking, "
            "so VpcConfig must not name subnets or security groups.")


def _logging(value, current: dict) -> dict:
    if not isinstance(value, dict):
        raise InvalidParameterValueException("LoggingConfig must be an object.")
    out = dict(current)
    fmt = value.get("LogFormat", out.get("LogFormat", "Text"))
    if fmt not in ("Text", "JSON"):
        raise v.constraint_error(fmt, "loggingConfig.logFormat", "Member must satisfy enum value set: [JSON, Text]")
    out["LogFormat"] = fmt
    if "LogGroup" in value:
        if not isinstance(value["LogGroup"], str) or not LOG_GROUP_RE.fullmatch(value["LogGroup"]):
            raise v.constraint_error(value["LogGroup"], "loggingConfig.logGroup",
                                     r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+")
        out["LogGroup"] = value["LogGroup"]
    for member, allowed in (("ApplicationLogLevel", APP_LOG_LEVELS), ("SystemLogLevel", SYSTEM_LOG_LEVELS)):
        if member in value:
            if value[member] not in allowed:
                raise v.constraint_error(value[member], f"loggingConfig.{member[0].lower() + member[1:]}",
                                         f"Member must satisfy enum value set: [{', '.join(allowed)}]")
            if fmt != "JSON":
                raise InvalidParameterValueException(
                    f"{member} can only be set when LogFormat is JSON.")
            out[member] = value[member]
    if fmt == "JSON":       # AWS fills in INFO for both levels in JSON mode
        out.setdefault("ApplicationLogLevel", "INFO")
        out.setdefault("SystemLogLevel", "INFO")
    else:
        out.pop("ApplicationLogLevel", None)
        out.pop("SystemLogLevel", None)
    return out


def apply(params: dict, base: dict, catalogue: RuntimeCatalogue, *, creating: bool,
          today: dt.date | None = None) -> tuple[dict, dict | None]:
    """-> (new config, new env variables or None when Environment was not given)."""
    refuse_unsupported(params)
    cfg = dict(base)
    if params.get("PackageType") not in (None, "Zip"):
        if params["PackageType"] == "Image":
            raise InvalidParameterValueException(
                "lambdalet does not support PackageType Image: deploy a .zip package (Code.ZipFile) instead.")
        raise v.constraint_error(params["PackageType"], "packageType", "Member must satisfy enum value set: [Zip, Image]")
    if "Runtime" in params:
        cfg["Runtime"] = catalogue.check(params["Runtime"], creating=creating, today=today).identifier
    if "Role" in params:
        cfg["Role"] = v.role(params["Role"])
    if "Handler" in params:
        cfg["Handler"] = v.handler(params["Handler"])
    if "Description" in params:
        cfg["Description"] = v.description(params["Description"])
    if "Timeout" in params:
        cfg["Timeout"] = v.timeout(params["Timeout"])
    if "MemorySize" in params:
        cfg["MemorySize"] = v.memory_size(params["MemorySize"])
    if "TracingConfig" in params:
        cfg["TracingConfig"] = v.tracing_config(params["TracingConfig"])
    if "Architectures" in params:
        cfg["Architectures"] = v.architectures(params["Architectures"])
    if "Architectures" in params or "Runtime" in params:   # the host's own (or emulated) architecture only
        catalogue.check_architecture(cfg.get("Architectures"), cfg.get("Runtime"))
    if "EphemeralStorage" in params:
        cfg["EphemeralStorage"] = v.ephemeral_storage(params["EphemeralStorage"])
    if "SnapStart" in params:
        apply_on = (params["SnapStart"] or {}).get("ApplyOn", "None")
        if apply_on not in ("None", "PublishedVersions"):
            raise v.constraint_error(apply_on, "snapStart.applyOn", "Member must satisfy enum value set: [PublishedVersions, None]")
        cfg["SnapStart"] = {"ApplyOn": apply_on}
    snap = cfg.get("SnapStart", {}).get("ApplyOn", "None")
    if snap != "None" and cfg.get("Runtime") not in SNAPSTART_RUNTIMES:
        raise InvalidParameterValueException(f"{cfg.get('Runtime')} is not supported for SnapStart enabled functions.")
    if creating and params.get("TenancyConfig") is not None:   # immutable: Update has no such member
        cfg["TenancyConfig"] = tenancy.validate(params["TenancyConfig"])
    tenancy.refuse_with(cfg)
    if "LoggingConfig" in params:
        cfg["LoggingConfig"] = _logging(params["LoggingConfig"], cfg["LoggingConfig"])
    if "KMSKeyArn" in params:
        arn = v.kms_key_arn(params["KMSKeyArn"])
        if arn:
            cfg["KMSKeyArn"] = arn          # env vars are sealed under this key (services/envvars.py)
        else:
            cfg.pop("KMSKeyArn", None)
    if "DeadLetterConfig" in params:
        dlc = params["DeadLetterConfig"] or {}
        target = v.target_arn(dlc.get("TargetArn", ""), "deadLetterConfig.targetArn")
        if target and target.startswith("arn:aws") and ":sqs:" in target and target.endswith(".fifo"):
            # AWS: a dead-letter queue is a standard SQS queue (or SNS topic), never a FIFO queue.
            raise InvalidParameterValueException(f"The target {target} is a FIFO queue; Lambda sends asynchronous "
                                                 f"invocation records only to standard queues.")
        if target:
            cfg["DeadLetterConfig"] = {"TargetArn": target}
        else:
            cfg.pop("DeadLetterConfig", None)
    if "Layers" in params:      # syntax and count here; services/layers.py resolves them (functions.py)
        v.layer_version_arns(params["Layers"])
    if "VpcConfig" in params:
        _vpc(params["VpcConfig"])
    if params.get("FileSystemConfigs"):
        raise InvalidParameterValueException("lambdalet does not support FileSystemConfigs (EFS mounts).")
    env = v.environment(params["Environment"]) if "Environment" in params else None
    if env is not None:
        cfg["EnvironmentSet"] = True      # AWS echoes a given Environment, even an empty one (views.py)
    if cfg.get("PackageType", "Zip") == "Zip" and (not cfg.get("Runtime") or not cfg.get("Handler")):
        raise InvalidParameterValueException(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.")
    return cfg, env

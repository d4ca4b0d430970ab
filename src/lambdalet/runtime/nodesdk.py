"""The AWS SDK for JavaScript v3 in the Node.js runtimes (host side: what is provisioned, where it goes).

AWS's nodejs18.x+ runtimes carry the v3 SDK in /var/runtime/node_modules, the last NODE_PATH entry: a
function's own node_modules (and a layer's /opt/nodejs[/nodeNN]/node_modules) come first, so a package
that bundles its own SDK gets its own. Here `make install` provisions the clients below from npm per
node major into <runtimes_dir>/node-sdk/<major>/node_modules (nodesdk_provision.py); the namespace
backend binds that directory read-only at /var/runtime/node_modules. `require` finds it through
NODE_PATH (launch.py); `import` does too: node_path_esm.js, preloaded before the bootstrap, lets ES
module resolution fall back to NODE_PATH as AWS's runtime does (Node itself searches it for require only).

Which clients: AWS ships all of v3 (~400 clients); lambdalet provisions the clients of the services it
serves (a client of any other service could only fail here), the credential providers (samples build
their chains with them), and DynamoDB's client with lib-dynamodb (AWS samples import them at init;
~2 MB), all at one version: ~42 MB, 42 packages. Nothing runs at install (--ignore-scripts).

A function's client reaches lambdalet with no configuration: init sets AWS_ENDPOINT_URL to its API
proxy (runtime/api_proxy.py, plain HTTP on 127.0.0.1 inside, so no CA bundle is needed), and the role's
credentials and AWS_REGION are in the environment, which the v3 SDK's default chain reads.
"""
from __future__ import annotations

import json
from pathlib import Path

INNER = "/var/runtime/node_modules"      # where the namespace backend binds the SDK, as on AWS
MARKER = "lambdalet-sdk.json"            # what was provisioned: {"version": ..., "packages": [...]}

PACKAGES = (
    "@aws-sdk/client-lambda", "@aws-sdk/client-sqs", "@aws-sdk/client-sts", "@aws-sdk/client-iam",
    "@aws-sdk/client-kms", "@aws-sdk/client-cloudwatch-logs", "@aws-sdk/client-scheduler",
    "@aws-sdk/client-organizations", "@aws-sdk/credential-providers",
    "@aws-sdk/client-dynamodb", "@aws-sdk/lib-dynamodb",
)


def sdk_root(runtimes_dir: Path, major: str) -> Path:
    """<runtimes_dir>/node-sdk/<major>: npm's prefix; its node_modules is what an environment sees."""
    return Path(runtimes_dir) / "node-sdk" / major


def provisioned(runtimes_dir: Path | None, major: str) -> tuple[str, str] | None:
    """(host dir bound at INNER, SDK version) when `make install` provisioned node `major`'s SDK."""
    if runtimes_dir is None:
        return None
    root = sdk_root(runtimes_dir, major)
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    modules = root / "node_modules"
    if not (modules / "@aws-sdk" / "client-sqs" / "package.json").is_file():
        return None
    return str(modules.resolve()), str(marker.get("version", "?"))

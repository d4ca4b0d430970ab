"""Who is calling, and for which account: built by api/ after SigV4, passed to every service call."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    account_id: str          # 12 digits; every resource belongs to exactly one account
    principal_arn: str       # e.g. arn:aws:iam::123456789012:user/admin
    access_key_id: str
    user_id: str = ""        # AWS's "UserId" (e.g. AIDA...)


@dataclass(frozen=True)
class RequestContext:
    caller: Caller
    region: str              # from the SigV4 credential scope
    request_id: str
    base_url: str            # https://host:port of this server, for URLs we hand out (Code.Location)
    source_ip: str = ""
    user_agent: str = ""
    trace_header: str = ""   # X-Amzn-Trace-Id as sent (an SDK inside a function passes its own: recursion)

    @property
    def account_id(self) -> str:
        return self.caller.account_id

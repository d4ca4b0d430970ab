"""Code that runs INSIDE an execution environment: init (PID 1, Runtime API) and managed runtimes.

Nothing here imports the rest of lambdalet except `runtime.bridge` (the host <-> init framing),
which sandbox/ also uses. Whatever runs here is in the tenant's trust domain.
"""

"""What the server tells about itself: its own log lines (logsetup.py: text or JSON, one line per API
request: requestlog.py; environment lifecycle and the Event path: lifecycle.py), Prometheus metrics
(metrics.py, served by listener.py on --metrics-listen), the start-up progress lines (progress.py)
and the activity snapshot `lambdalet status` reads (activity.py).

Imports nothing of lambdalet but models/: every layer above may call it, in one line."""

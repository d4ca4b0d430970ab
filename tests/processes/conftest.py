"""Tests that start real processes without a server: sandbox backends (environments, their cgroups,
recovery after a crash), children killed mid-write, the AWS CLI against an in-process binding.
Slower than tests/unit and, for the namespace backend, root only; `make test-fast` leaves them out."""

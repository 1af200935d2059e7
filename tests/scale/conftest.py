"""One local Ray cluster for tests/scale, on 127.0.0.1 only, started once and stopped at the end.

The environment is set before Ray is imported: a single-node cluster on the loopback address
(Ray otherwise advertises and binds the machine's routable address), no usage reporting, and
constrain's proxy middleware (a stream cut off by a dead replica ends with an error event).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback-only node address
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "constrain.scale.proxy:proxy_middlewares")

try:
    import ray
except ImportError:  # scripts/test.sh installs it; a bare checkout says why these tests did not run
    ray = None

# What `constrain.load()` picks (llama.cpp for the embedded GGUF when installed, as scripts/test.sh
# does; else transformers), one thread per replica or actor: the CPU share each reserves.
# CONSTRAIN_SCALE_RUNTIME=transformers runs the same tests on the other runtime.
RUNTIME = os.environ.get("CONSTRAIN_SCALE_RUNTIME", "auto")
THREADS = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A 4-CPU (logical) Ray node on this machine; stopped, with Serve, when the session ends."""
    if ray is None:
        pytest.skip("Ray is not installed: pip install 'constrain[ray]' (scripts/test.sh does)")
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             namespace="constrain-tests")
    try:
        yield
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()

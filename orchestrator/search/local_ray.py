"""An embedded Ray that only its user can reach: every port on the loopback address, token authentication on.

Ray 2.60 binds its servers (GCS, raylet, workers, dashboard agent, runtime-env
agent) to the node's IP address, and on Linux that is the machine's network
address unless Ray is told the node is local only. Two settings do that:
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (the single-machine mode Ray uses on
macOS and Windows, where `localhost` is not rewritten to the network address)
and `_node_ip_address="127.0.0.1"`. Token authentication stays on, with a
fresh random token for this process that lives only in its environment and
that of the Ray processes it starts (readable by this user alone, never
written to disk); a token the user already set in `RAY_AUTH_TOKEN` is used as it is.
`--address` to an existing cluster goes through none of this: it uses that
cluster's own authentication (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or ~/.ray/auth_token).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from typing import Any

LOOPBACK = "127.0.0.1"
_ANNOUNCED = False


def prepare_embedded_ray() -> None:
    """Set this process (and the Ray processes it will start) to loopback only, with token authentication.

    Idempotent. Call before `ray.init()` or `ray.cluster_utils.Cluster()` starts a local Ray.
    Joining a remote cluster from the same process afterwards is not supported: use a new process.
    """
    os.environ["RAY_AUTH_MODE"] = "token"  # set explicitly, so Ray prints no banner of its own
    if not os.environ.get("RAY_AUTH_TOKEN"):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by the Ray processes this one starts
    import ray._private.ray_constants as ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    ray_constants.ENABLE_RAY_CLUSTER = False  # this process imported Ray before the variable was set
    Config.initialize("")  # Ray caches its settings in C++: let it see token mode and the token
    AuthenticationTokenLoader.instance().reset_cache()


def embedded_init_options(**overrides: Any) -> dict[str, Any]:
    """`ray.init` keyword arguments for an embedded cluster bound to the loopback address."""
    options: dict[str, Any] = {
        # A new Ray of its own, always: without it ray.init() joins the cluster named by RAY_ADDRESS or the last
        # `ray start` (or ray.cluster_utils.Cluster) on this machine, and dies with it.
        "address": "local",
        "_node_ip_address": LOOPBACK,
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    options.update(overrides)
    return options


def init_embedded_ray(**overrides: Any) -> None:
    """Start Ray on this machine, reachable only from it (loopback) and only with this process's token."""
    import ray

    prepare_embedded_ray()
    ray.init(**embedded_init_options(**overrides))
    announce()


def announce() -> None:
    """Say once per process, in plain words, how the embedded Ray is protected (the token itself is never shown)."""
    global _ANNOUNCED
    if _ANNOUNCED:
        return
    _ANNOUNCED = True
    print(
        f"[hedgerow] Ray started on this machine only ({LOOPBACK}), with token authentication: "
        "other machines cannot connect, and local programs need this search's token, held in its memory",
        file=sys.stderr,
        flush=True,
    )

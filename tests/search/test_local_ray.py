"""The embedded Ray is reachable only by its user: loopback ports only, and a client without the token is refused."""

from __future__ import annotations

import os
import socket

import psutil
import pytest
import ray

from orchestrator.search.local_ray import LOOPBACK, init_embedded_ray

pytestmark = pytest.mark.slow


def ray_listeners() -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of this process and its children."""
    me = psutil.Process()
    pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.NoSuchProcess:
                continue
            found.append((name, conn.laddr.ip, conn.laddr.port))
    return found


def is_loopback(address: str) -> bool:
    return address.removeprefix("::ffff:").startswith("127.") or address == "::1"


def machine_addresses() -> list[str]:
    """This machine's own non-loopback IPv4 addresses: a connection from one of them is not from loopback."""
    return [
        a.address
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]


def reachable_from(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def exposed_ports(listeners: list[tuple[str, str, int]]) -> list[str]:
    """Every listener bound beyond loopback, or reachable through one of this machine's other addresses."""
    exposed = [f"{name} on {ip}:{port}" for name, ip, port in listeners if not is_loopback(ip)]
    for address in machine_addresses():
        exposed += [f"{name} :{port} via {address}" for name, _, port in listeners if reachable_from(address, port)]
    return exposed


@pytest.fixture(scope="module")
def embedded():
    """The product's embedded Ray with one task run, so that workers are listening too."""
    init_embedded_ray(num_cpus=1)
    ray.get(ray.remote(lambda: os.getpid()).remote())
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_every_ray_port_is_on_loopback_and_none_answers_another_address(embedded):
    listeners = ray_listeners()
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, f"Ray's servers were not found listening: {listeners}"
    assert not exposed_ports(listeners), exposed_ports(listeners)
    assert embedded.startswith(f"{LOOPBACK}:")


def test_a_client_without_the_token_is_refused(embedded):
    """Other users' programs on this machine reach loopback too: the GCS turns them away without the token."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(embedded) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        request = gcs_service_pb2.GetAllNodeInfoRequest()
        for metadata in (None, [("authorization", "Bearer " + "0" * 64)]):
            with pytest.raises(grpc.RpcError) as info:
                stub.GetAllNodeInfo(request, metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
        token = [("authorization", "Bearer " + os.environ["RAY_AUTH_TOKEN"])]
        assert len(stub.GetAllNodeInfo(request, metadata=token, timeout=10).node_info_list) == 1  # the check is real


def test_the_token_is_on_no_command_line(embedded):
    token = os.environ["RAY_AUTH_TOKEN"]
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            assert token not in " ".join(process.cmdline()), process.name()
        except psutil.NoSuchProcess:
            continue


def test_ray_prints_no_banner_of_its_own_and_ours_appears_once(monkeypatch, capsys):
    import logging

    from ray._private.authentication import authentication_token_setup as token_setup

    from orchestrator.search import local_ray

    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    token_setup.logger.addHandler(handler)
    try:
        local_ray.prepare_embedded_ray()
        assert token_setup.enable_token_auth_by_default() is True  # what ray.init() asks on a local start
    finally:
        token_setup.logger.removeHandler(handler)
    assert not [r.getMessage() for r in records if r.levelno >= logging.WARNING]

    monkeypatch.setattr(local_ray, "_ANNOUNCED", False)
    local_ray.announce()
    local_ray.announce()
    err = capsys.readouterr().err
    assert err.count("[hedgerow] Ray started on this machine only (127.0.0.1)") == 1
    assert os.environ["RAY_AUTH_TOKEN"] not in err

"""Delivery over MLLP (etl.coexistence.mllp) against a real listener on 127.0.0.1."""

from __future__ import annotations

import socket
import threading

import pytest

from etl.coexistence import mllp
from etl.settings import Settings
from tests.mllp_listener import Listener, free_port

pytestmark = pytest.mark.unit

MESSAGE = "MSH|^~\\&|VARDFLYTT|CORE|ELVIS|ELVIS|20270215||ADT^A31^ADT_A05|ctl-9|P|2.5\rPID|1"


def _settings(monkeypatch, tmp_path, endpoints: str, hosts: str | None = None) -> Settings:
    monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path))
    monkeypatch.setenv("VARDFLYTT_COEXISTENCE_ENDPOINTS", endpoints)
    if hosts is None:
        monkeypatch.delenv("VARDFLYTT_ALLOWED_HOSTS", raising=False)
    else:
        monkeypatch.setenv("VARDFLYTT_ALLOWED_HOSTS", hosts)
    return Settings()


def test_an_endpoint_on_an_allowed_host_is_used(monkeypatch, tmp_path):
    settings = _settings(monkeypatch, tmp_path, '{"elvis": "127.0.0.1:2575"}')
    assert mllp.endpoint_of(settings, "elvis") == mllp.Endpoint("127.0.0.1", 2575)


@pytest.mark.parametrize(
    ("endpoints", "hosts", "says"),
    [
        pytest.param("{}", None, "is not set", id="none-configured"),
        pytest.param('{"elvis": "127.0.0.1"}', None, "not host:port", id="no-port"),
        pytest.param('{"elvis": "127.0.0.1:99999"}', None, "not host:port", id="bad-port"),
        pytest.param('{"elvis": "203.0.113.7:2575"}', None, "not an allowed host", id="public"),
        pytest.param('{"elvis": "pas.example:2575"}', "10.0.0.0/8", "not an allowed", id="name"),
    ],
)
def test_no_usable_endpoint_fails_closed(monkeypatch, tmp_path, endpoints, hosts, says):
    settings = _settings(monkeypatch, tmp_path, endpoints, hosts)
    with pytest.raises(mllp.EndpointError, match=says):
        mllp.endpoint_of(settings, "elvis")


def test_a_message_is_framed_delivered_and_its_ack_read():
    with Listener(ack_code="AE") as listener:
        ack = mllp.send(mllp.Endpoint("127.0.0.1", listener.port), MESSAGE, 5)
    assert (ack.code, ack.control_id) == ("AE", "ctl-9")
    assert listener.control_ids() == ["ctl-9"]


def test_nobody_listening_is_a_delivery_error_to_retry():
    with pytest.raises(mllp.DeliveryError, match="ConnectionRefusedError"):
        mllp.send(mllp.Endpoint("127.0.0.1", free_port()), MESSAGE, 2)


def test_a_receiver_that_never_answers_times_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]))
        thread.start()
        with pytest.raises(mllp.DeliveryError, match="TimeoutError"):
            mllp.send(mllp.Endpoint("127.0.0.1", server.getsockname()[1]), MESSAGE, 0.3)
        thread.join(5)
        for connection in accepted:
            connection.close()

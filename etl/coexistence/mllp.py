"""Delivery of one message over MLLP (HL7's minimal lower layer protocol) and its ACK.

A small blocking socket client rather than ``hl7.client.MLLPClient``: that one has no timeout
and takes whatever one ``recv`` returns as the answer, while a receiver may answer in pieces or
not at all. Framing and the ACK's parsing are python-hl7's (``hl7.client`` constants,
``hl7.parse``). Every endpoint's host must be an allowed host (``VARDFLYTT_ALLOWED_HOSTS``):
a message holds patient data and goes nowhere the operator has not declared.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from hl7.client import CR, EB, SB

from etl.coexistence.hl7v2 import Ack, parse_ack
from etl.core.residency import Residency, ResidencyError
from etl.settings import Settings

MAX_ACK_BYTES = 1 << 20


class DeliveryError(RuntimeError):
    """The message may not have arrived (no connection, no ACK in time): try again later."""


class EndpointError(ValueError):
    """No usable endpoint for a system: none configured, malformed, or a host not allowed."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def endpoint_of(settings: Settings, system: str) -> Endpoint:
    """The system's MLLP endpoint from VARDFLYTT_COEXISTENCE_ENDPOINTS, on an allowed host."""
    text = settings.coexistence_endpoints.get(system)
    setting = f"VARDFLYTT_COEXISTENCE_ENDPOINTS[{system}]"
    if not text:
        raise EndpointError(f"{setting} is not set: no endpoint to send {system}'s feed to")
    host, _, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EndpointError(f"{setting} is '{text}', not host:port")
    try:
        Residency.of(settings).check_host(host, setting)
    except ResidencyError as error:
        raise EndpointError(str(error)) from None
    return Endpoint(host, int(port_text))


def send(endpoint: Endpoint, message: str, timeout_seconds: float) -> Ack:
    """Send one framed message and wait for its framed ACK; DeliveryError when it may not have
    arrived (the caller retries with the same control id, so a receiver can drop a repeat)."""
    payload = SB + message.encode("ascii") + EB + CR
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout_seconds) as sock:
            sock.settimeout(timeout_seconds)
            sock.sendall(payload)
            answer = _read_block(sock)
    except (OSError, TimeoutError) as error:
        raise DeliveryError(f"{type(error).__name__} at {endpoint}") from None
    try:
        return parse_ack(answer.decode("utf-8", errors="replace"))
    except Exception as error:
        raise DeliveryError(f"no readable ACK from {endpoint} ({type(error).__name__})") from None


def _read_block(sock: socket.socket) -> bytes:
    """Bytes between <SB> and <EB><CR>, read until the block ends or the timeout passes."""
    buffer = b""
    while EB + CR not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed before the ACK ended")
        buffer += chunk
        if len(buffer) > MAX_ACK_BYTES:
            raise ConnectionError("ACK larger than any ACK")
    start = buffer.find(SB)
    return buffer[start + 1 if start >= 0 else 0 : buffer.index(EB + CR)]

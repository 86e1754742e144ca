"""The control plane's addresses: resolved while DNS works, cached for when it does not."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def endpoint_host_port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r} has no host")
    return parts.hostname, parts.port or 443


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses in resolver order (IPv4 first); an IP literal resolves to itself; ``[]`` on failure."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    addresses: list[str] = []
    for family, *_, sockaddr in sorted(infos, key=lambda info: info[0] != socket.AF_INET):
        address = str(sockaddr[0])
        if family in (socket.AF_INET, socket.AF_INET6) and address not in addresses:
            addresses.append(address)
    return addresses


def server_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"https://{host}:{port}"


def ip_of_server(server: str) -> str | None:
    host = urlsplit(server).hostname
    try:
        return str(ipaddress.ip_address(host or ""))
    except ValueError:
        return None

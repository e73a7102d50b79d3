"""TCP ports: is one free, and who listens on it."""

from __future__ import annotations

import socket

import psutil


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (we could bind it ourselves)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listener_pid(port: int) -> int | None:
    """The pid listening on ``port``, when the system lets us see it."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.Error, OSError):
        pass
    return None


def describe_process(pid: int | None) -> str:
    """'pid 123 (python: saijin run)' or 'another program' when unknown."""
    if pid is None:
        return "another program"
    try:
        process = psutil.Process(pid)
        command = " ".join(process.cmdline()[:4])
        return f"pid {pid} ({process.name()}{': ' + command if command else ''})"
    except psutil.Error:
        return f"pid {pid}"


def port_owner(host: str, port: int) -> str | None:
    """Who listens on host:port, or None when the port is free."""
    if port_is_free(host, port):
        return None
    return describe_process(listener_pid(port))

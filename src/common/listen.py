"""Whether a TCP address can be listened on, asked before a server tries, with a clear answer.

gRPC's C core reports a failed bind on stderr itself (an `add_port.cc` line with its own wording)
before Python sees the error, so an operator gets a raw library line and then ours. Checking the
address first with a plain socket (SO_REUSEADDR, as gRPC and asyncio bind) turns the common case,
a port taken by another process, into one clear line naming that process. A port taken between
the check and the bind still fails in the server, as before; the check only adds clarity.
"""

from __future__ import annotations

import errno
import socket

from common.errors import ConfigError
from common.procnet import describe_holders


def ensure_can_listen(host: str, port: int, *, what: str, option: str = "--port") -> None:
    """`ConfigError` when `host:port` cannot be bound: taken (naming the holder) or not local.

    Port 0 (the kernel picks a free one) always can. Every address `host` resolves to is tried,
    as a server binding it would: one of them taken is enough to refuse, since clients reaching
    that address would meet the other process.
    """
    if port == 0:
        return
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise ConfigError(f"cannot listen on {shown} ({what}): {error.strerror}") from None
    unavailable: OSError | None = None
    bound_any = False
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As the servers bind: address reuse on, and `::` dual-stack (Linux's default), so
            # an IPv4 listener on the port counts as taken there too.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    holder = describe_holders(port) or "another process"
                    raise ConfigError(
                        f"cannot listen on {shown} ({what}): the port is taken by {holder}; "
                        f"stop it or choose another {option}"
                    ) from None
                unavailable = error
                continue
            bound_any = True
    if not bound_any and unavailable is not None:
        raise ConfigError(
            f"cannot listen on {shown} ({what}): {unavailable.strerror} "
            "(is the address one of this machine's?)"
        )

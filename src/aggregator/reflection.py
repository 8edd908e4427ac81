"""gRPC server reflection, so `grpcurl -plaintext 127.0.0.1:50051 list` and `describe` just work.

Reflection serves the descriptors of the services it is told about (and the files they import)
from the process's default descriptor pool, where the generated `oracle_pb2` and `health_pb2`
modules registered themselves on import. It reveals only the public contract (`proto/`), which
every client has anyway; it can be left out by not calling `enable_reflection`.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection

from common.proto import oracle_pb2


def service_names(*, health: bool = True) -> tuple[str, ...]:
    """The fully qualified names listed: the oracle's services, health, reflection itself."""
    names = [service.full_name for service in oracle_pb2.DESCRIPTOR.services_by_name.values()]
    if health:
        names.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    names.append(reflection.SERVICE_NAME)
    return tuple(names)


def enable_reflection(
    server: grpc.aio.Server, *, health: bool = True, extra: Iterable[str] = ()
) -> tuple[str, ...]:
    """Register the reflection service on `server` (before it starts); returns the names listed."""
    names = (*service_names(health=health), *extra)
    reflection.enable_server_reflection(names, server)
    return names

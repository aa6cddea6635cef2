# hotplane_client: a Python client for hotplane (gRPC), stubs and helpers.
#
#   pb.patterns_pb2 / pb.patterns_pb2_grpc, ...: the stubs generated from proto/hotplane/v1/
#   insecure_channel, secure_channel: channels with a bearer token and TLS (channel.py)
#   details: the google.rpc details of an error as dataclasses (errors.py)
#   watch_status: WatchStatus across reconnects and restarts, resyncs as events (watch.py)
#   match_at_least: read-your-writes with min_generation (consistency.py)
from hotplane_client._pb.hotplane import v1 as pb
from hotplane_client._pb.hotplane.v1 import (
    audit_pb2,
    common_pb2,
    drain_pb2,
    drain_pb2_grpc,
    hot_reload_pb2,
    hot_reload_pb2_grpc,
    patterns_pb2,
    patterns_pb2_grpc,
)
from hotplane_client.channel import insecure_channel, secure_channel
from hotplane_client.consistency import GenerationBehind, match_at_least
from hotplane_client.errors import (
    ErrorDetails,
    ErrorInfo,
    FieldViolation,
    PreconditionViolation,
    ResourceInfo,
    details,
)
from hotplane_client.watch import Event, Resync, watch_status

__all__ = [
    "pb", "audit_pb2", "common_pb2", "drain_pb2", "drain_pb2_grpc", "hot_reload_pb2",
    "hot_reload_pb2_grpc", "patterns_pb2", "patterns_pb2_grpc", "insecure_channel",
    "secure_channel", "GenerationBehind", "match_at_least", "ErrorDetails", "ErrorInfo",
    "FieldViolation", "PreconditionViolation", "ResourceInfo", "details", "Event", "Resync",
    "watch_status",
]

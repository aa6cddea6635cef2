# hotplane_client.watch: WatchStatus as one iterator that survives reconnects and restarts.
#
# Event ids are numbered per server process (GetStatusResponse.instance_id). When a stream
# ends (the server's --watch-max-age, a shutdown) or the connection drops, the iterator asks
# GetStatus which instance answers: the same one, it resumes with after_event_id = the last id
# it yielded, so no event is missed or yielded twice; another one (the server restarted, or
# the address now reaches another replica), that numbering means nothing there, so it starts
# from a snapshot and yields Resync(reason="restarted"). A snapshot the server itself marks
# resync=true (the resume point left its replay buffer, or the stream fell behind) is yielded
# as Resync(reason="server"). This is what `hotplane ctl watch` does (src/ctl/watch.rs).
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Union

import grpc

from hotplane_client._pb.hotplane.v1 import hot_reload_pb2 as pb
from hotplane_client._pb.hotplane.v1 import hot_reload_pb2_grpc

# Failures after which reconnecting can help: the server went away, restarts, or is busy.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}


@dataclass(frozen=True)
class Event:
    """One event of the stream, in order; `instance_id` is the server process that numbered it."""

    response: pb.WatchStatusResponse
    instance_id: str


@dataclass(frozen=True)
class Resync:
    """What happened since the last event is unknown: `snapshot` is the full status now.

    reason: "restarted" (another server process answers: instance_id differs) or "server"
    (the server sent a snapshot with resync=true).
    """

    reason: str
    snapshot: pb.WatchStatusResponse
    instance_id: str
    previous_instance_id: str


WatchItem = Union[Event, Resync]


def watch_status(
    channel: grpc.Channel,
    *,
    targets: Sequence[int] = (),
    kinds: Sequence[int] = (),
    after_event_id: int = 0,
    heartbeats: bool = False,
    max_reconnects: Optional[int] = None,
    backoff: float = 0.1,
    max_backoff: float = 5.0,
    on_reconnect: Optional[Callable[[grpc.RpcError | None], None]] = None,
) -> Iterator[WatchItem]:
    """Follows WatchStatus on `channel` forever (or until `max_reconnects` reconnects in a row
    yield nothing), yielding Event and Resync. The first item is Event(SNAPSHOT) unless
    `after_event_id` resumes. Heartbeats are yielded only with `heartbeats=True`.

    A failure that is not transient, or any failure before the server was first reached
    (more likely a wrong address than a restart), is raised.
    """
    stub = hot_reload_pb2_grpc.HotReloadStub(channel)
    last_id = after_event_id
    instance: Optional[str] = None
    reached = False
    started = False  # an event was yielded: a same-instance snapshot at last_id is a repeat
    idle = 0
    delay = backoff
    while True:
        yielded = False
        err: Optional[grpc.RpcError] = None
        try:
            now = stub.GetStatus(pb.GetStatusRequest()).instance_id
            restarted = instance is not None and now != instance
            previous, instance = instance or "", now
            after = 0 if restarted else last_id
            stream = stub.WatchStatus(
                pb.WatchStatusRequest(targets=targets, kinds=kinds, after_event_id=after)
            )
            reached = True
            first = True
            for ev in stream:
                if ev.HasField("status") and ev.status.instance_id:
                    instance = ev.status.instance_id
                if ev.kind == pb.EVENT_KIND_HEARTBEAT:
                    if heartbeats:
                        yield Event(ev, instance)
                    continue
                if ev.kind == pb.EVENT_KIND_SNAPSHOT and (restarted and first or ev.resync):
                    last_id = ev.event_id
                    yield Resync("restarted" if restarted and first else "server", ev, instance, previous)
                    yielded = True
                elif ev.event_id <= last_id and (ev.kind != pb.EVENT_KIND_SNAPSHOT or started):
                    # The final status a server sends when it shuts down repeats the last id, and
                    # a server with no event yet (id 0) answers every resume with a snapshot.
                    pass
                else:
                    last_id = ev.event_id
                    yield Event(ev, instance)
                    yielded = True
                started = True
                first = False
        except grpc.RpcError as e:
            if not reached or e.code() not in _TRANSIENT:
                raise
            err = e
        if on_reconnect:
            on_reconnect(err)
        if yielded:
            idle, delay = 0, backoff
        else:
            idle += 1
            if max_reconnects is not None and idle > max_reconnects:
                raise err if err is not None else RuntimeError("WatchStatus kept ending with no event")
        time.sleep(delay)
        delay = min(delay * 2, max_backoff)

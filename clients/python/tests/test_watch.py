# WatchStatus through hotplane_client.watch_status: resuming after a stream ends with no gap
# or duplicate, an explicit Resync when the server cannot resume or was restarted, and the
# health Watch through StartDrain and StopDrain.
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import hotplane_client as hc
from hotplane_client import drain_pb2, hot_reload_pb2 as hr, patterns_pb2 as p

LEARNED = [hr.EVENT_KIND_PATTERN_LEARNED]


def learn(ch, query):
    stub = hc.patterns_pb2_grpc.PatternsStub(ch)
    return stub.LearnPattern(p.LearnPatternRequest(query=query, category="c", confidence=0.9))


def test_resumes_after_the_stream_ends_with_no_gap_or_duplicate(start_server):
    # Streams end after 200 ms; each pattern is learned while no stream is open (from the
    # reconnect callback), so only the after_event_id resume can deliver its event.
    server = start_server("--watch-max-age", "200ms")
    with server.channel() as ch:
        reconnects = []

        def on_reconnect(err):
            reconnects.append(err)
            if len(reconnects) <= 3:
                learn(ch, f"pattern number {len(reconnects)}")

        it = hc.watch_status(ch, kinds=LEARNED, on_reconnect=on_reconnect)
        first = next(it)
        assert isinstance(first, hc.Event) and first.response.kind == hr.EVENT_KIND_SNAPSHOT
        got = [next(it) for _ in range(3)]
        assert all(isinstance(e, hc.Event) for e in got), got
        assert [e.response.kind for e in got] == [hr.EVENT_KIND_PATTERN_LEARNED] * 3
        ids = [e.response.event_id for e in got]
        assert ids == sorted(set(ids)) and ids[0] > first.response.event_id
        assert [e.response.pattern_id for e in got] == sorted({e.response.pattern_id for e in got})
        assert len(reconnects) >= 3
        it.close()


def test_a_resume_point_out_of_the_replay_buffer_is_an_explicit_resync(start_server):
    # A replay buffer of 2 events: 5 learned while disconnected cannot be replayed.
    server = start_server("--watch-max-age", "200ms", "--event-capacity", "2")
    with server.channel() as ch:
        calls = []

        def on_reconnect(err):
            calls.append(err)
            if len(calls) == 1:
                for i in range(5):
                    learn(ch, f"missed pattern {i}")

        it = hc.watch_status(ch, kinds=LEARNED, on_reconnect=on_reconnect)
        snap = next(it)
        item = next(it)
        assert isinstance(item, hc.Resync), item
        assert item.reason == "server" and item.snapshot.resync
        assert item.snapshot.event_id > snap.response.event_id
        assert item.instance_id == snap.instance_id
        it.close()


def test_a_server_restart_is_an_explicit_resync_then_events_continue(start_server):
    server = start_server()
    with server.channel() as ch:
        it = hc.watch_status(ch, kinds=LEARNED)
        snap = next(it)
        first_id = learn(ch, "before the restart").pattern.id
        before = next(it)
        assert before.response.pattern_id == first_id

        server.restart()  # same port and SQLite file, a new process: new instance, new numbering
        item = next(it)
        # The old process's final status at shutdown (sent whatever the kinds filter) may come
        # first: a DRAIN_CHANGED event of the old instance, not a repeat.
        if isinstance(item, hc.Event):
            assert item.response.kind == hr.EVENT_KIND_DRAIN_CHANGED, item
            assert item.instance_id == snap.instance_id
            assert item.response.event_id > before.response.event_id
            item = next(it)
        assert isinstance(item, hc.Resync), item
        assert item.reason == "restarted"
        assert item.previous_instance_id == snap.instance_id != item.instance_id
        assert item.snapshot.status.instance_id == item.instance_id

        second_id = learn(ch, "after the restart").pattern.id
        after = next(it)
        assert isinstance(after, hc.Event) and after.response.pattern_id == second_id
        assert after.instance_id == item.instance_id
        it.close()


def test_health_watch_flips_through_start_drain_and_stop_drain(server):
    with server.channel() as ch:
        health = health_pb2_grpc.HealthStub(ch)
        drain = hc.drain_pb2_grpc.DrainStub(ch)
        stream = health.Watch(health_pb2.HealthCheckRequest(service=""))
        S = health_pb2.HealthCheckResponse
        assert next(stream).status == S.SERVING
        drain.StartDrain(drain_pb2.StartDrainRequest(reason="python client test"))
        assert next(stream).status == S.NOT_SERVING
        assert drain.GetDrainStatus(drain_pb2.GetDrainStatusRequest()).status.draining
        # A draining replica refuses new work as retryable elsewhere: UNAVAILABLE with RetryInfo.
        try:
            hc.patterns_pb2_grpc.PatternsStub(ch).MatchPattern(p.MatchPatternRequest(query="anything"))
            raise AssertionError("a draining replica answered a match")
        except grpc.RpcError as err:
            d = hc.details(err)
            assert d.code == grpc.StatusCode.UNAVAILABLE, d
            assert d.retry_delay is not None and d.retry_delay > 0, d
        drain.StopDrain(drain_pb2.StopDrainRequest())
        assert next(stream).status == S.SERVING
        stream.cancel()

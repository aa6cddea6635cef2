# hotplane_client.consistency: read-your-writes across replicas with min_generation.
#
# A write (LearnPattern, ...) answers the generation that serves it. A match sent to any
# replica with min_generation = that generation is answered only by a replica serving it or
# newer; one that is behind answers FAILED_PRECONDITION with ErrorInfo GENERATION_BEHIND and
# its served_generation. match_at_least retries those, a bounded number of times.
from __future__ import annotations

import time
from typing import Callable, Optional

import grpc

from hotplane_client._pb.hotplane.v1 import patterns_pb2
from hotplane_client.errors import details


class GenerationBehind(Exception):
    """The replica still served an older generation after every attempt."""

    def __init__(self, served_generation: int, min_generation: int, attempts: int):
        super().__init__(
            f"the replica serves generation {served_generation}, older than {min_generation}, "
            f"after {attempts} attempts"
        )
        self.served_generation = served_generation
        self.min_generation = min_generation
        self.attempts = attempts


def match_at_least(
    stub,
    query: str,
    min_generation: int,
    *,
    attempts: int = 20,
    delay: float = 0.05,
    max_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    on_behind: Optional[Callable[[int], None]] = None,
    **fields,
) -> patterns_pb2.MatchPatternResponse:
    """MatchPattern on `stub` (a PatternsStub) with min_generation, retrying GENERATION_BEHIND.

    Waits `delay`, doubling up to `max_delay`, between at most `attempts` calls; calls
    `on_behind(served_generation)` after each refusal. Any other error is raised as is;
    GenerationBehind when the replica is still behind at the end. `fields` go into the
    request (min_confidence, metadata_as_json).
    """
    req = patterns_pb2.MatchPatternRequest(query=query, min_generation=min_generation, **fields)
    served = 0
    for attempt in range(1, attempts + 1):
        try:
            return stub.MatchPattern(req)
        except grpc.RpcError as err:
            d = details(err)
            if d.code != grpc.StatusCode.FAILED_PRECONDITION or d.reason != "GENERATION_BEHIND":
                raise
            served = int(d.error_info.metadata.get("served_generation", "0"))
            if on_behind:
                on_behind(served)
            if attempt < attempts:
                sleep(delay)
                delay = min(delay * 2, max_delay)
    raise GenerationBehind(served, min_generation, attempts)

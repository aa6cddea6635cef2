# Learn, match (another spelling), batch, bad input decoded to the field, NOT_FOUND's details
# and read-your-writes with min_generation, against a real hotplane (conftest.py).
import json

import grpc
import pytest

import hotplane_client as hc
from hotplane_client import patterns_pb2 as p


def learn(stub, query, category="workflow_status", **kw):
    return stub.LearnPattern(p.LearnPatternRequest(query=query, category=category, confidence=0.95, **kw))


def test_learn_then_match_another_spelling_and_batch(patterns):
    learned = learn(patterns, "Quali sono i workflow attivi?", metadata_json='{"action":"list_workflows"}')
    assert learned.created and learned.generation > 0

    # Another spelling: case, punctuation and spacing differ; the normalized text is the same.
    m = hc.match_at_least(patterns, "  quali SONO i workflow attivi ", learned.generation, metadata_as_json=True)
    assert m.matched
    assert m.pattern.category == "workflow_status"
    assert m.generation >= learned.generation
    assert json.loads(m.pattern.metadata_json) == {"action": "list_workflows"}

    b = patterns.BatchMatchPatterns(p.BatchMatchPatternsRequest(
        queries=["QUALI sono i workflow attivi!", "something never learned"],
        min_generation=learned.generation))
    assert [r.matched for r in b.results] == [True, False]
    assert b.results[0].pattern.id == m.pattern.id


def test_bad_input_is_decoded_to_the_field(patterns):
    with pytest.raises(grpc.RpcError) as e:
        patterns.BatchMatchPatterns(p.BatchMatchPatternsRequest(queries=["fine", "x" * 4097]))
    d = hc.details(e.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT
    assert d.violation("queries[1]") is not None, d.field_violations
    assert d.retry_delay is None  # a permanent error is not offered as retryable

    with pytest.raises(grpc.RpcError) as e:
        patterns.LearnPattern(p.LearnPatternRequest(query="a good query", category="c", confidence=2.0))
    d = hc.details(e.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in d.field_violations] == ["confidence"]

    with pytest.raises(grpc.RpcError) as e:
        patterns.LearnPattern(p.LearnPatternRequest(query="a good query", category="c", confidence=0.9, metadata_json="[1]"))
    assert hc.details(e.value).violation("metadata_json") is not None


def test_not_found_names_the_pattern(patterns):
    with pytest.raises(grpc.RpcError) as e:
        patterns.GetPattern(p.GetPatternRequest(id=424242))
    d = hc.details(e.value)
    assert d.code == grpc.StatusCode.NOT_FOUND
    assert d.reason == "PATTERN_NOT_FOUND"
    assert d.error_info.domain == hc.errors.DOMAIN
    assert d.error_info.metadata["pattern_id"] == "424242"
    assert (d.resource_info.resource_type, d.resource_info.resource_name) == ("pattern", "424242")


def test_min_generation_ahead_is_retried_then_reported_with_the_served_generation(patterns):
    g = learn(patterns, "read your writes").generation
    seen = []
    with pytest.raises(hc.GenerationBehind) as e:
        hc.match_at_least(patterns, "read your writes", g + 1000, attempts=3, delay=0,
                          sleep=lambda _: None, on_behind=seen.append)
    assert e.value.served_generation == g and e.value.min_generation == g + 1000
    assert seen == [g, g, g]

    # The raw error, decoded: ErrorInfo with both generations, and the PreconditionFailure.
    with pytest.raises(grpc.RpcError) as raw:
        patterns.MatchPattern(p.MatchPatternRequest(query="x", min_generation=g + 1000))
    d = hc.details(raw.value)
    assert d.reason == "GENERATION_BEHIND"
    assert d.error_info.metadata == {"served_generation": str(g), "min_generation": str(g + 1000)}
    assert [(v.type, v.subject) for v in d.precondition_failures] == [("GENERATION", "min_generation")]

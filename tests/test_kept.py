"""Finished answers kept for resuming: their budget counts what they really cost (only
their journals stay, not the streams that wrote them), and they go when their window ends."""

import gc
import tracemalloc

import httpx2

from app.kept import cost
from tests.support import frames_with_ids


def held() -> int:
    """Bytes allocated now, but for the log records pytest keeps of each test."""
    kept_logs = [tracemalloc.Filter(False, "*/logging/*"), tracemalloc.Filter(False, "*/_pytest/*")]
    snapshot = tracemalloc.take_snapshot().filter_traces(kept_logs)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_the_budget_counts_what_a_kept_answer_really_costs(make_relay, server_loop):
    # Demo mode: no upstream stand-in in this process whose own records would count.
    relay = make_relay(anthropic_api_key=None, anthropic_base_url=None, demo_token_delay=0)
    kept = relay.state.runtime.kept
    body = {"message": "keep me", "resumable": True}
    with httpx2.Client(timeout=10) as client:
        for _ in range(20):  # warm up: imports, pools, caches
            client.post(f"{relay.url}/api/chat", json=body)
        gc.collect()
        tracemalloc.start()
        try:
            before, counted_before = held(), kept.nbytes
            for _ in range(200):
                reply = client.post(f"{relay.url}/api/chat", json=body)
            assert server_loop.wait_for(lambda: not relay.state.runtime.streams, 2)
            gc.collect()
            grown = held() - before
        finally:
            tracemalloc.stop()
    assert len(frames_with_ids(reply.text.split("\n"))) > 50  # a real answer each time
    counted = (kept.nbytes - counted_before) / 200
    measured = grown / 200
    print(f"\nper kept answer: measured {measured:.0f} B, counted {counted:.0f} B")
    assert measured <= counted * 1.1, "kept answers cost more than their budget counts"
    assert counted <= measured * 2, "the count is far above the real cost"


def test_kept_answers_go_when_their_window_ends(make_relay, upstream, server_loop):
    relay = make_relay(resume_window=0.2)
    runtime = relay.state.runtime
    reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "x", "resumable": True})
    stream_id = frames_with_ids(reply.text.split("\n"))[0][2]["stream_id"]
    journal = runtime.kept.get(stream_id)
    assert journal is not None and runtime.kept.nbytes == cost(journal)
    assert server_loop.wait_for(lambda: len(runtime.kept) == 0, 2)
    assert runtime.kept.nbytes == 0

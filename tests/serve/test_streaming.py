"""The server's streaming hot path: the spliced SSE events are byte for byte what encoding the
chunk dict gives, a client's ready items go out together, and the startup heap is kept out of
the garbage collector's full passes while the server runs."""

from __future__ import annotations

import asyncio
import gc

from hypothesis import given, settings
from hypothesis import strategies as st

import unillm
from unillm import SamplingParams as SP
from unillm.serve import ServeConfig
from unillm.serve.metrics import ServeMetrics
from unillm.serve.responses import ChunkEvents, chat_chunk, completion_chunk, sse
from unillm.serve.scheduler import MicroBatcher

from .conftest import running_server

texts = st.text(st.characters(codec="utf-8"), max_size=40)  # quotes, controls, U+2028, emoji
reasons = st.sampled_from([None, "stop", "length", "abort"])


@settings(max_examples=300, deadline=None)
@given(rid=texts, model=texts, created=st.integers(0, 2**40), index=st.integers(0, 1000),
       text=texts, finish=reasons, with_usage=st.booleans())
def test_spliced_events_equal_the_encoded_chunks(rid, model, created, index, text, finish,
                                                with_usage):
    completions = ChunkEvents(rid, created, model, "text_completion", with_usage)
    assert completions.completion(index, text, finish) == sse(completion_chunk(
        rid, created, model, index, text, finish, None, with_usage))
    chats = ChunkEvents(rid, created, model, "chat.completion.chunk", with_usage)
    assert chats.chat(index, text, finish) == sse(chat_chunk(
        rid, created, model, index, {"content": text} if text else {}, finish, None,
        with_usage))


def test_a_ticket_hands_over_every_ready_item_at_once(hf_generator):
    """What the engine delivered while the writer was busy comes out as one list (one socket
    write), in order; an engine error after some chunks hands those over, then raises."""
    params = SP(max_tokens=6, temperature=0.0, ignore_eos=True)
    items = [item for _, item in hf_generator.stream_many(["Hello"], params)]
    assert len(items) >= 7 and isinstance(items[-1], unillm.Completion)

    async def run():
        batcher = MicroBatcher(hf_generator, ServeConfig(served_model_name="m"),
                               ServeMetrics("m"))
        ticket = batcher.submit(hf_generator.prepare("Hello", params), stream=True)
        batcher._dequeue(ticket)  # delivered by hand below: no engine run
        ticket.running = (None, 0)
        taken = []
        batches = ticket.batches()
        ticket.deliver(items[0])
        taken.append(await batches.__anext__())
        for item in items[1:5]:
            ticket.deliver(item)
        taken.append(await batches.__anext__())
        for item in items[5:]:
            ticket.deliver(item)
        taken.extend([b async for b in batches])

        failing = batcher.submit(hf_generator.prepare("Hello", params), stream=True)
        batcher._dequeue(failing)
        failing.running = (None, 0)
        failing.deliver(items[0])
        failing.deliver(RuntimeError("the engine failed"))
        got, error = [], None
        try:
            async for batch in failing.batches():
                got.append(batch)
        except RuntimeError as exc:
            error = exc
        ticket.close()
        failing.close()
        return taken, got, error

    taken, got, error = asyncio.run(run())
    assert [len(b) for b in taken] == [1, 4, len(items) - 5]
    assert [i for b in taken for i in b] == items
    assert got == [[items[0]]] and str(error) == "the engine failed"


def test_the_startup_heap_is_frozen_while_the_server_runs(hf_generator):
    with running_server(hf_generator):
        assert gc.get_freeze_count() > 100_000  # the model and the imported libraries
    assert gc.get_freeze_count() == 0  # collectable again once the server stopped

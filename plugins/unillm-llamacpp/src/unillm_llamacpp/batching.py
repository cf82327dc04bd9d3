"""The llama.cpp engine's running batch: several sequences decoded in one `llama_decode` call.

This is what llama-server's slots do: one llama.cpp context with `parallel` sequences
(`n_seq_max`), each with its own KV cells; every step builds one `llama_batch` holding each
decoding sequence's last token and chunks of the prompts still being read (every token tagged
with its sequence id and position; while prompts wait, steps alternate between reading
prompts alone and decoding, so a new request's first token does not wait for a step that
decodes all the others), decodes it, and samples each sequence's next token from
the logits at its own row with that request's own sampler chain (`sequence.Sequence`, the same
code the one-at-a-time path runs). Requests join at the next step when a sequence is free, and
leave when they end or are cancelled; the running sequence with the highest id then moves into
the freed one, so running ids stay consecutive (see `_release`).

Prompt cache (`prompt_cache`, on by default, as llama-server's `cache_prompt`): free sequences
keep the cells they hold, and cells about to be replaced (by another request, or by a sequence
moving in) are first saved in host memory (`prompt_cache.SavedStates`, up to
`prompt_cache_mib`, as llama-server's `--cache-ram`). A new request starts from the free
sequence's cells or the saved state that begins with the longest run of its own prompt's
tokens (copied or restored to the id it is given) and reads only the rest: a shared system
prompt, a conversation's earlier turns or the same prompt sent again are read once. Where
llama.cpp cannot keep part of a sequence's cells (recurrent models; sliding-window attention
that has dropped cells the rest would need) the whole prompt is read, as llama-server does.

Exactness: every sequence has its own KV stream (`kv_unified=False`), laid out as in a
context of its own, the same KV type and the same sampler chain as the one-at-a-time path, so
a request's tokens do not depend on its batch-mates (tests check greedy tokens are equal).
Cells from the prompt cache were computed in other steps, with other micro-batch shapes: on
CPU the tests find the same greedy tokens; other backends may round differently, as with
llama-server's `cache_prompt` (`prompt_cache=False` reads every prompt whole).

It runs in its own context beside the engine's (the model's weights are shared), in a daemon
thread; `llama_decode` releases the GIL while it computes.
"""

from __future__ import annotations

import collections
import ctypes
import threading
from typing import Any

from unillm import EngineRequest, EngineResult, RunningBatch, TokenEvent

from .prompt_cache import SavedStates, common_prefix
from .sequence import Sequence


class _Active:
    """A request holding one of the context's sequences."""

    __slots__ = ("fed", "index", "next_token", "reading", "reported", "request", "reused", "seq",
                 "seq_id", "sink")

    def __init__(self, request: EngineRequest, sink: Any, seq: Sequence, seq_id: int):
        self.request, self.sink, self.seq, self.seq_id = request, sink, seq, seq_id
        self.fed = 0  # tokens of the sequence in its KV cells (prompt, then generated)
        self.next_token: int | None = None  # sampled, not yet fed
        self.index: int | None = None  # its logits row in the current batch
        self.reading = 0  # prompt tokens in the current batch
        self.reported = False
        self.reused = 0  # prompt tokens whose KV cells came from the prompt cache

    def in_cells(self) -> list[int]:
        """The tokens whose KV cells this sequence holds (the prompt, then generated ones)."""
        prompt = self.seq.prompt
        return prompt[:self.fed] + self.seq.generated[:max(self.fed - len(prompt), 0)]


class LlamaRunningBatch(RunningBatch):
    """`parallel` sequences of `slot_ctx` KV cells each, decoded together (see module doc)."""

    def __init__(self, engine: Any, *, parallel: int, slot_ctx: int, prompt_cache: bool = True,
                 saved_bytes: int = 0):
        self.engine = engine
        self.lib = lib = engine._lib
        self.parallel, self.slot_ctx, self.prompt_cache = parallel, slot_ctx, prompt_cache
        params = type(engine.llm.context_params).from_buffer_copy(engine.llm.context_params)
        params.n_ctx = parallel * slot_ctx
        params.n_seq_max = parallel
        params.kv_unified = False
        params.n_batch = params.n_ubatch = max(int(params.n_batch), parallel)
        self.batch_tokens = int(params.n_batch)
        self.ctx = lib.llama_init_from_model(engine.llm._model.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {parallel} sequences "
                               f"x {slot_ctx} cells")
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(self.batch_tokens, 0, 1)
        self.received = {"parallel": parallel, "slot_ctx": slot_ctx, "kv_unified": False,
                         "n_batch": self.batch_tokens, "prompt_cache": prompt_cache}
        self._free = list(range(parallel - 1, -1, -1))  # lowest id last: the next one taken
        self._kept: list[list[int]] = [[] for _ in range(parallel)]  # a free id's cells' tokens
        self._saved = SavedStates(saved_bytes if prompt_cache else 0)
        # Ids in stream copies queued since the last successful `llama_decode` (which runs
        # them first): a destination's buffer is not yet what its cells say, and a source's
        # must stay as it is until copied, so neither is saved or restored into (both read or
        # write the buffers at once, not in the queue's order).
        self._copying: set[int] = set()
        self._n_swa = int(lib.llama_model_n_swa(engine.llm._model.model))
        self._waiting: collections.deque[tuple[EngineRequest, Any]] = collections.deque()
        self._cancelled: set[EngineRequest] = set()
        self._active: dict[EngineRequest, _Active] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._read_last = False  # the last step read prompts only (see `_step`)
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="unillm-llamacpp-batch")
        self._thread.start()

    # -- the contract --------------------------------------------------------------------
    def refusal(self, request: EngineRequest) -> str | None:
        if len(request.prompt_token_ids or ()) + request.params.max_tokens > self.slot_ctx:
            return "prompt"
        return None

    def add(self, request: EngineRequest, sink: Any) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("the engine was closed")
            self._waiting.append((request, sink))
        self._wake.set()

    def cancel(self, request: EngineRequest) -> None:
        with self._lock:
            self._cancelled.add(request)
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            events = self._admit()
            if self._stopping:
                break
            if events:
                self._deliver(events)
            if not self._active:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                events = self._step()
            except Exception as exc:  # noqa: BLE001 - every running request gets it
                events = self._drop_all(exc)
            self._deliver(events)
        error = RuntimeError("the engine was closed")
        self._deliver(self._drop_all(error) + [(r, s, error) for r, s in self._waiting])

    def _drop_all(self, error: Exception) -> list[tuple[EngineRequest, Any, Any]]:
        """End every running request with `error` and forget every cell (a failed step may
        have left them half written): no moves, no saves."""
        events = [(a.request, a.sink, error) for a in self._active.values()]
        for a in self._active.values():
            a.seq.close()
        self._active.clear()
        with self._lock:
            self._free = list(range(self.parallel - 1, -1, -1))
        self._kept = [[] for _ in range(self.parallel)]
        self._copying = set(range(self.parallel))  # queued copies may still run
        self.lib.llama_memory_clear(self.memory, False)
        return events

    def _admit(self) -> list[tuple[EngineRequest, Any, Any]]:
        """Apply cancellations, then give free sequences to waiting requests (the lowest free
        id each, taken once its `Sequence` exists, so the running ids stay consecutive)."""
        failed = []
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
            if cancelled:
                self._waiting = collections.deque(
                    (r, s) for r, s in self._waiting if r not in cancelled)
        for request in cancelled:
            active = self._active.get(request)
            if active is not None:
                self._release(active)
        while True:
            with self._lock:
                if not (self._free and self._waiting):
                    break
                request, sink = self._waiting.popleft()
            try:
                seq = Sequence(self.engine, request)
            except Exception as exc:  # noqa: BLE001 - reported to that request only
                failed.append((request, sink, exc))
                continue
            with self._lock:
                seq_id = self._free.pop()
            active = self._active[request] = _Active(request, sink, seq, seq_id)
            if self.prompt_cache:
                self._reuse(active)
        return failed

    def _reuse(self, active: _Active) -> None:
        """Start `active` from the cells that begin with the longest run of its prompt: its
        own id's, another free sequence's (copied there) or a saved state's (restored there);
        at least the prompt's last token is read again, for its logits. Its own id's cells, if
        they are not the ones kept whole, are saved first."""
        prompt, seq_id, lib, memory = active.seq.prompt, active.seq_id, self.lib, self.memory
        best, found = seq_id, common_prefix(self._kept[seq_id], prompt)
        for other in self._free:
            if len(self._kept[other]) > found:
                length = common_prefix(self._kept[other], prompt)
                if length > found:
                    best, found = other, length
        most = max(len(prompt) - 1, 0)  # the last prompt token is always read
        found = min(found, most)
        settled = seq_id not in self._copying
        saved_length, key = self._saved.longest(prompt) if settled else (0, None)
        restore = key is not None and min(saved_length, most) > found
        own = self._kept[seq_id]
        if settled and own and (restore or best != seq_id or found < len(own)):
            self._save(seq_id, own)
        reuse = min(saved_length, most) if restore else found
        if restore:
            self._saved.touch(key)
            state = self._saved[key]
            buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
            if not lib.llama_state_seq_set_data(self.ctx, buffer, len(state), seq_id):
                reuse = 0  # not restored: read the whole prompt
        elif best != seq_id and reuse > 0:
            lib.llama_memory_seq_cp(memory, best, seq_id, -1, -1)
            self._copying.update((best, seq_id))
        if reuse > 0 and not self._keeps(seq_id, reuse):
            reuse = 0
        if reuse == 0:
            lib.llama_memory_seq_rm(memory, seq_id, -1, -1)
        self._kept[seq_id] = []
        active.fed = active.reused = reuse

    def _keeps(self, seq_id: int, reuse: int) -> bool:
        """Drop `seq_id`'s cells from position `reuse` on; False when what is left cannot go
        on from there: a recurrent state cannot be cut, and sliding-window attention may have
        dropped cells that position still attends to (llama-server's same two checks)."""
        lib, memory = self.lib, self.memory
        if not lib.llama_memory_seq_rm(memory, seq_id, reuse, -1):
            return False
        first = lib.llama_memory_seq_pos_min(memory, seq_id)
        last = lib.llama_memory_seq_pos_max(memory, seq_id)
        return 0 <= first <= max(0, reuse - max(self._n_swa, 1)) and last == reuse - 1

    def _save(self, seq_id: int, tokens: list[int]) -> None:
        """Keep `seq_id`'s cells (holding `tokens`) in host memory."""
        key = tuple(tokens)
        if not self._saved.budget or self._saved.touch(key):
            return
        lib = self.lib
        size = lib.llama_state_seq_get_size(self.ctx, seq_id)
        if not size or size > self._saved.budget:
            return
        buffer = (ctypes.c_uint8 * size)()
        if lib.llama_state_seq_get_data(self.ctx, buffer, size, seq_id) == size:
            self._saved.put(key, bytes(buffer))

    def _release(self, active: _Active) -> None:
        """Free `active`'s sequence and keep the running ids contiguous: the sequence with
        the highest id moves into the gap (its KV stream copied whole, at the start of the
        next `llama_decode`). llama.cpp forms each micro-batch from consecutive sequence ids
        only, so a gap splits a step in two (measured on test:llama-small: 32 decoding
        sequences with even ids took 4x as long as 32 with consecutive ids)."""
        self._active.pop(active.request, None)
        lib, memory, gap, cache = self.lib, self.memory, active.seq_id, self.prompt_cache
        kept = active.in_cells() if cache else []
        if not cache:
            lib.llama_memory_seq_rm(memory, gap, -1, -1)
        active.seq.close()
        last = max(self._active.values(), key=lambda a: a.seq_id, default=None)
        if last is not None and last.seq_id > gap:
            if cache and kept and gap not in self._copying:
                self._save(gap, kept)  # before the moved sequence's cells replace them
            lib.llama_memory_seq_cp(memory, last.seq_id, gap, -1, -1)
            self._copying.update((last.seq_id, gap))
            if cache:  # what stays in the moved sequence's old cells
                kept = last.in_cells()
            else:
                lib.llama_memory_seq_rm(memory, last.seq_id, -1, -1)
            gap, last.seq_id = last.seq_id, gap
        self._kept[gap] = kept
        with self._lock:
            self._free.append(gap)  # the lowest free id: the next admission takes it

    def _step(self) -> list[tuple[EngineRequest, Any, Any]]:
        """One `llama_decode` (prompt chunks only, or every decoding sequence's next token
        and prompt chunks in the room left), then a token for each sequence it completed."""
        batch, budget = self.batch, self.batch_tokens
        n = 0

        def put(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
            batch.seq_id[n][0], batch.logits[n] = seq_id, logits
            n += 1

        running = sorted(self._active.values(), key=lambda a: a.seq_id)
        reading = [a for a in running if a.next_token is None]
        # Prompts first: a step that reads prompts only, when some are waiting, gives a new
        # request its first token after its own prefill instead of after a step that also
        # decodes every running sequence (under load most of a step). The decoding sequences
        # lose nothing (their next token would wait for those prompt tokens in a shared step
        # too), and every other step decodes, so a long prompt cannot starve them.
        prompts_only = bool(reading) and not self._read_last
        self._read_last = prompts_only and len(reading) < len(running)
        room = budget if prompts_only else budget - (len(running) - len(reading))
        for a in running:
            a.index, a.reading = None, 0
        for a in reading:  # prompt chunks, lowest ids first, while the batch has room
            a.reading = min(len(a.seq.prompt) - a.fed, room)
            room -= a.reading
        # The tokens go in sequence-id order: llama.cpp cuts a batch over separate KV streams
        # into micro-batches of consecutive sequence ids, each taking the same number of
        # tokens from every sequence, so in this order one micro-batch takes one token of
        # every sequence (measured: 64 decoding sequences out of order took as long as 64
        # single-token decodes).
        for a in running:
            if a.reading:
                prompt = a.seq.prompt
                for k in range(a.fed, a.fed + a.reading):
                    last = k == len(prompt) - 1
                    if last:
                        a.index = n
                    put(prompt[k], k, a.seq_id, last)
            elif a.next_token is not None and not prompts_only:
                a.index = n
                put(a.next_token, a.fed, a.seq_id, True)
        batch.n_tokens = n
        code = self.lib.llama_decode(self.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        self._copying.clear()  # the queued stream copies ran first
        events = []
        for a in list(self._active.values()):
            if a.index is None and not a.reading:  # waited: decodes or reads next step
                continue
            a.fed += 1 if a.next_token is not None else a.reading
            if a.index is None:  # still reading its prompt
                continue
            step = a.seq.step(self.ctx, a.index)
            a.next_token = step.token
            result = None
            if not a.reported:
                a.reported = True
                result = EngineResult(received={**a.seq.received, **self.received,
                                                "prompt_cache_tokens": a.reused})
            events.append((a.request, a.sink, TokenEvent(
                0, (step.token,), finish_reason=step.finish, stop_reason=step.stop_reason,
                logprobs=[step.logprob] if step.logprob is not None else None,
                result=result)))
            if step.finish is not None:
                self._release(a)
        return events

    @staticmethod
    def _deliver(events: list[tuple[EngineRequest, Any, Any]]) -> None:
        by_sink: dict[int, tuple[Any, list]] = {}
        for request, sink, event in events:
            by_sink.setdefault(id(sink), (sink, []))[1].append((request, event))
        for sink, items in by_sink.values():
            sink(items)


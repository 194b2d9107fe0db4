"""The batched llama.cpp engine: many requests decoded together, prefixes shared.

`BatchedEngine` is a drop-in for `LlamaEngine`. Any number of threads may call
`generate()` at once; each blocks until its answer is done. One scheduler thread
owns the llama context (contexts are not thread-safe) and runs a loop of steps.
Each step builds one `llama_decode` batch that holds the next token of every
sequence that is decoding plus chunks of the prompts of newly admitted ones, up to
`n_batch` tokens (fewer while others decode, so that a long prompt does not stall
them for seconds); then it samples one token per sequence with llama.cpp's native
samplers, reading the logits where llama.cpp left them. Requests join between
steps, and leave when they stop, run out of tokens or are cancelled.

Each sequence id is a slot (see `slots.py`). A finished request's KV cache stays in
its slot, so the next turn of a chat re-uses the longest common prefix and only
prefills the new tokens; concurrent requests that share a prefix (sub-agents
asked the same question) prefill it once and copy it with `llama_memory_seq_cp`.
Reused tokens are reported as `Usage.cached_tokens`.

It does not know about asyncio or HTTP, does not shift or truncate a context that
runs full (the request ends with "length", as in `LlamaEngine`), and assumes a
plain transformer KV cache: recurrent and sliding-window models may refuse partial
`seq_rm`, and then simply reuse nothing. It does not promise that a request decoded
beside others gives the text it gives alone: llama.cpp's kernels round a batch of
rows differently from one row, which can flip a greedy near-tie (as a prefix served
from the cache can, in `LlamaEngine` too).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from ponder.engine.common import ChatTemplate, check_fits, check_score, common_prefix, with_defaults
from ponder.engine.sequence import Job, Seq, Vocab
from ponder.engine.slots import Slot, SlotTable
from ponder.errors import InvalidRequest
from ponder.types import Done, Event, Message, SamplingParams, Tool, Usage

# Prompt tokens per step while other sequences are decoding: a long prompt then
# costs them several short stalls instead of a few seconds-long ones.
PREFILL_WHILE_DECODING = 128

# Wakes a caller's wait now and then to notice a scheduler that died without
# answering (which would be a bug), instead of hanging forever.
WAIT_POLL_S = 1.0


class EngineClosed(RuntimeError):
    pass


class BatchedEngine:
    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        n_seq_max: int = 8,
        n_batch: int = 512,
        n_ubatch: int = 512,
        defaults: SamplingParams | None = None,
        kv_unified: bool = True,
        flash_attn: bool | None = True,
        repack: bool = True,
    ):
        """`n_ctx` is what one sequence may use; the cache holds `n_seq_max` of them.

        `kv_unified` keeps all sequences in one KV buffer. It is what lets any set of
        sequences share a ubatch (with one buffer per sequence, llama.cpp batches only
        runs of consecutive sequence ids), and a prefix copy there only tags cells.
        `flash_attn` skips the cells of other sequences instead of masking them in a
        matmul whose rounding depends on where cells lie, so a seeded request gives the
        same text whatever else the cache holds. `repack` lets ggml lay weights out for
        its interleaved CPU kernels (llama.cpp's `--no-repack` turns it off). See
        bench/batching.py for the rates of each."""
        if n_batch < n_seq_max:
            raise ValueError(f"n_batch ({n_batch}) must hold one token per sequence (n_seq_max={n_seq_max})")
        self.path = path
        self.defaults = defaults or SamplingParams()
        self.n_ctx = -(-n_ctx // 256) * 256  # llama.cpp pads every context to 256, as LlamaEngine reports it
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # what Llama(verbose=False) does
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        mp.use_extra_bufts = repack
        self._model = LlamaModel(path_model=str(path), params=mp, verbose=False)
        p = llama_cpp.llama_context_default_params()
        p.n_ctx, p.n_seq_max, p.kv_unified = self.n_ctx * n_seq_max, n_seq_max, kv_unified
        p.n_batch, p.n_ubatch = n_batch, min(n_ubatch, n_batch)
        p.n_threads = p.n_threads_batch = n_threads
        p.flash_attn_type = {None: llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, True: llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                             False: llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}[flash_attn]  # fmt: skip
        ctx = llama_cpp.llama_init_from_model(self._model.model, p)
        if ctx is None:
            self._model.close()
            raise RuntimeError(f"llama.cpp could not create a context for {path} (n_ctx={p.n_ctx})")
        self._vocab = Vocab(self._model.vocab)
        eos, bos = self._model.token_eos(), self._model.token_bos()
        self._template = ChatTemplate(
            self._model.metadata().get("tokenizer.chat_template"),
            eos_token=self._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self._model.token_get_text(bos) if bos != -1 else "",
        )
        self._scheduler = Scheduler(ctx, self._vocab, SlotTable(n_seq_max), n_batch, self.n_ctx, kv_unified)

    # 1. messages -> prompt tokens ------------------------------------------------

    @property
    def template(self) -> ChatTemplate:
        return self._template

    def prompt_tokens(self, messages: Sequence[Message], prefill: str = "", tools: Sequence[Tool] = ()) -> list[int]:
        """The chat template's prompt, then `prefill`: the start of the assistant's reply."""
        if self._model.model is None:  # the vocabulary went with the model
            raise EngineClosed("the batched engine is closed")
        text, add_bos = self._template.render(messages, prefill, tools)
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def check_fits(self, n_prompt: int, max_tokens: int | None) -> None:
        check_fits(self.n_ctx, n_prompt, max_tokens)

    # 2. decode -------------------------------------------------------------------

    def generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        cancel: threading.Event,
        emit: Callable[[Event], None],
    ) -> None:
        """Decode one answer for `tokens`, emitting TextDelta events then one Done.

        Blocks until done; runs in the same batches as every other caller's request.
        An error inside the scheduler for this request is raised here."""
        if not tokens:
            raise InvalidRequest("the prompt has no tokens", param="messages")
        self.check_fits(len(tokens), None)
        if any(t < 0 or t >= self._vocab.n_tokens for t in tokens):  # would fail the whole shared batch
            raise InvalidRequest("the prompt holds a token id outside the vocabulary", param="messages")
        self._run(Job(list(tokens), with_defaults(params, self.defaults), cancel, emit))

    def score(self, tokens: list[int], start: int, cancel: threading.Event) -> list[float]:
        """The log-probability of each of `tokens[start:]` given the tokens before it,
        computed in the same batches as every other caller's request."""
        check_score(tokens, start, self._vocab.n_tokens)
        self.check_fits(len(tokens), None)
        job = Job(list(tokens), SamplingParams(temperature=0.0), cancel, lambda _: None, score_from=start)
        self._run(job)
        if len(job.scores) != len(tokens) - start:  # cancelled before its last token was read
            raise EngineClosed("the scoring request was cancelled")
        return job.scores

    def _run(self, job: Job) -> None:
        self._scheduler.submit(job)
        while not job.done.wait(WAIT_POLL_S):
            if not self._scheduler.alive:
                raise EngineClosed("the batched engine's scheduler stopped before finishing this request")
        if job.error is not None:
            raise job.error

    def forget(self) -> None:
        """Drop every slot's cached prefix once no request is running (blocks until then)."""
        done = self._scheduler.forget()
        while not done.wait(WAIT_POLL_S):
            if not self._scheduler.alive:
                raise EngineClosed("the batched engine's scheduler stopped before dropping its cache")

    def close(self) -> None:
        """Stop the scheduler (requests still running get `EngineClosed`), free the model."""
        self._scheduler.close()
        self._model.close()


class Scheduler:
    """The thread that owns the llama context and runs every step."""

    def __init__(self, ctx: llama_cpp.llama_context_p, vocab: Vocab, slots: SlotTable, n_batch: int,
                 n_ctx: int, unified: bool):  # fmt: skip
        self._ctx = ctx
        self._freed = False
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._vocab = vocab
        self._slots = slots
        self._n_batch = n_batch
        self._n_ctx = n_ctx
        self._unified = unified
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._cv = threading.Condition()
        self._inbox: list[Job] = []
        self._closing = False
        self._queued: deque[Job] = deque()  # admitted in order, when a slot is free
        self._active: list[Seq] = []
        self._forgets: list[threading.Event] = []  # callers waiting for the cache to be dropped
        self._thread = threading.Thread(target=self._run, name="ponder-batched", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing or not self._thread.is_alive():
                raise EngineClosed("the batched engine is closed")
            self._inbox.append(job)
            self._cv.notify()

    def forget(self) -> threading.Event:
        """Ask for the cache to be dropped; the event is set once it is."""
        done = threading.Event()
        with self._cv:
            if self._closing or not self._thread.is_alive():
                raise EngineClosed("the batched engine is closed")
            self._forgets.append(done)
            self._cv.notify()
        return done

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()
        if not self._freed:
            self._freed = True
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)

    # the loop --------------------------------------------------------------------

    def _run(self) -> None:
        error: BaseException = EngineClosed("the batched engine was closed")
        try:
            while self._take_jobs():
                self._step()
        except BaseException as e:  # a bug or a fatal llama.cpp error: every waiting caller gets it
            error = e
        with self._cv:
            self._closing = True
            jobs = [*self._inbox, *self._queued, *(s.job for s in self._active)]
        for seq in self._active:
            seq.free()
        for job in jobs:
            if not job.done.is_set():
                job.fail(error)

    def _take_jobs(self) -> bool:
        """Move submitted jobs into the queue; sleep while there is nothing to do."""
        with self._cv:
            while not (self._closing or self._inbox or self._queued or self._active or self._forgets):
                self._cv.wait()
            self._queued.extend(self._inbox)
            self._inbox.clear()
            return not self._closing

    def _step(self) -> None:
        # 0. between requests, drop the cache if asked (cells and positions start over at 0)
        if self._forgets and not (self._active or self._queued):
            llama_cpp.llama_memory_clear(self._mem, True)
            for slot in self._slots.slots:
                slot.tokens = []
            with self._cv:
                forgets, self._forgets = self._forgets, []
            for done in forgets:
                done.set()
        # 1. requests cancelled before their next token leave now
        for seq in self._active:
            if seq.job.cancel.is_set():
                self._guard(seq, partial(seq.finish, "cancelled"))
        self._retire()
        # 2. sequences waiting for a shared prefix copy it once it is in the cache
        for seq in self._active:
            if seq.wait is not None and self._prefix_ready(seq):
                self._start(seq, seq.wait.reuse, seq.wait.source)
        # 3. new requests take free slots
        self._admit()
        # 4. one batch: a token per decoding sequence, then prompt chunks
        rows, scored = self._fill_batch()
        if self._batch.n_tokens == 0:
            if self._active:  # nothing to run, yet someone waits: a bug, and a busy loop if ignored
                raise RuntimeError("the batched scheduler stalled with sequences that cannot advance")
            return
        # 5. decode, then sample one token for each sequence that has logits
        rc = llama_cpp.llama_decode(self._ctx, self._batch)
        if rc != 0:
            self._fail_batch(RuntimeError(f"llama_decode failed with status {rc}"))
            return
        self._commit()
        for seq, row in rows:
            self._guard(seq, partial(seq.sample, self._ctx, row))
        for seq, row, token in scored:
            self._guard(seq, partial(seq.score, self._ctx, row, token))
        for seq in self._active:
            if seq.scored:
                self._guard(seq, partial(seq.finish, "stop"))
        self._retire()

    def _admit(self) -> None:
        for job in [j for j in self._queued if j.cancel.is_set()]:
            self._queued.remove(job)
            self._finish_unstarted(job)
        while self._queued:
            job = self._queued[0]
            plan = self._slots.plan(job.tokens, None if job.score_from is None else job.score_from - 1)
            if plan is None:
                return  # every slot is busy; the queue waits for one to finish
            seq = Seq(self._queued.popleft(), plan, self._vocab, self._n_ctx)
            self._active.append(seq)
            if not plan.wait:
                self._start(seq, plan.reuse, plan.source)

    @staticmethod
    def _finish_unstarted(job: Job) -> None:
        """A request cancelled while it queued: its Done, without ever taking a slot."""
        try:
            job.emit(Done("cancelled", Usage(prompt_tokens=len(job.tokens), completion_tokens=0)))
        except Exception as e:
            job.fail(e)
        else:
            job.done.set()

    # the KV cache ----------------------------------------------------------------

    @staticmethod
    def _prefix_ready(seq: Seq) -> bool:
        """Whether the slot `seq` waits on holds the awaited prefix, or never will."""
        assert seq.wait is not None and seq.wait.source is not None
        source = seq.wait.source
        return len(source.tokens) >= seq.wait.reuse or not (source.busy and source.target)

    def _start(self, seq: Seq, reuse: int, source: Slot | None) -> None:
        """Put the first `reuse` prompt tokens into `seq`'s slot, from itself or `source`."""
        mem, slot = self._mem, seq.slot
        n = min(reuse, common_prefix(seq.job.tokens, source.tokens)) if source is not None else 0
        if source is slot:
            if not llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, n, -1):  # a cache that cannot cut: start over
                llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, -1, -1)
                n = 0
            del slot.tokens[n:]
        else:
            llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, -1, -1)
            if source is not None and n > 0:
                self._copy(source, slot, n)
            slot.tokens = source.tokens[:n] if source is not None else []
        seq.start(n)

    def _copy(self, source: Slot, slot: Slot, n: int) -> None:
        mem = self._mem
        if self._unified:  # one buffer: the copy only tags the cells with a second sequence id
            llama_cpp.llama_memory_seq_cp(mem, source.seq_id, slot.seq_id, 0, n)
        else:  # one buffer per sequence: llama.cpp copies whole buffers only, so copy all and cut
            llama_cpp.llama_memory_seq_cp(mem, source.seq_id, slot.seq_id, -1, -1)
            llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, n, -1)

    # the batch -------------------------------------------------------------------

    def _fill_batch(self) -> tuple[list[tuple[Seq, int]], list[tuple[Seq, int, int]]]:
        """Fill the batch; return the sequences to sample, with their rows, and the
        scoring rows, with the token each one scores."""
        b, n, rows, scored = self._batch, 0, [], []
        # by sequence id: with one buffer per sequence, llama.cpp batches only runs of consecutive ids
        active = sorted(self._active, key=lambda s: s.slot.seq_id)
        for seq in active:
            if seq.next_token is not None:
                self._put(n, seq.next_token, len(seq.slot.tokens), seq.slot.seq_id, True)
                rows.append((seq, n))
                n += 1
        room = min(self._n_batch, n + PREFILL_WHILE_DECODING) if n else self._n_batch
        for seq in active:
            seq.chunk = 0
            if seq.wait is None and seq.pending and n < room:
                chunk = seq.pending[: room - n]
                pos, seq_id, job = len(seq.slot.tokens), seq.slot.seq_id, seq.job
                for i, token in enumerate(chunk):
                    # a scoring job: the logits at each position before a scored token
                    wanted = job.score_from is not None and job.score_from - 1 <= pos + i < len(job.tokens) - 1
                    self._put(n + i, token, pos + i, seq_id, wanted)
                    if wanted:
                        scored.append((seq, n + i, job.tokens[pos + i + 1]))
                n += len(chunk)
                seq.chunk = len(chunk)
                if seq.chunk == len(seq.pending) and job.score_from is None:
                    b.logits[n - 1] = True  # the prompt's last token: its logits give the first answer token
                    rows.append((seq, n - 1))
        b.n_tokens = n
        return rows, scored

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits

    def _commit(self) -> None:
        """The batch is decoded: its tokens are in the slots' caches now."""
        for seq in self._active:
            if seq.next_token is not None:
                seq.slot.tokens.append(seq.next_token)
                seq.next_token = None
            elif seq.chunk:
                seq.slot.tokens.extend(seq.pending[: seq.chunk])
                del seq.pending[: seq.chunk]
                seq.chunk = 0
                if not seq.pending:
                    seq.slot.target = []

    def _fail_batch(self, error: Exception) -> None:
        """A failed decode leaves the caches of its sequences unknown: clear them and fail those requests."""
        for seq in self._active:
            if seq.next_token is not None or seq.chunk:
                llama_cpp.llama_memory_seq_rm(self._mem, seq.slot.seq_id, -1, -1)
                seq.slot.tokens = []
                seq.finished, seq.error = True, error
        self._retire()

    # sequences leaving -----------------------------------------------------------

    @staticmethod
    def _guard(seq: Seq, action: Callable[[], None]) -> None:
        """Run `action` for one sequence; an error there ends that sequence alone."""
        try:
            action()
        except Exception as e:
            seq.finished, seq.error = True, e

    def _retire(self) -> None:
        keep = []
        for seq in self._active:
            if not seq.finished:
                keep.append(seq)
                continue
            seq.free()
            self._slots.release(seq.slot)
            if seq.error is not None:
                seq.job.fail(seq.error)
            else:
                seq.job.done.set()
        self._active = keep

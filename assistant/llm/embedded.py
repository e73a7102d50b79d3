"""The embedded engine: a GGUF model run in process by llama.cpp (llama-cpp-python), no server needed.

The engine keeps llama.cpp's evaluated state between turns: llama-cpp-python reuses the longest common token
prefix of the previous prompt, and the persona prompt is shaped so that only the new turn is evaluated.
Per system message (persona and mode) the evaluated conversation is saved when another one takes over and
restored when it comes back, so a persona switch does not cost the next turns their cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from assistant.config.schema import EngineConfig, GenerationConfig
from assistant.errors import EngineUnavailable, MissingExtra, ModelMissing
from assistant.llm.engine import ChatMessage
from assistant.models.offline import resolve_model
from assistant.text import has_japanese
from assistant.threads import CORES, cpu_threads

log = logging.getLogger(__name__)
native_log = logging.getLogger("llama.cpp")

_END = object()
#: Gemma-style turn markers, used when the model file has no chat template of its own.
_TURN_STOPS = ["<end_of_turn>", "<start_of_turn>", "<eos>"]


#: Evaluated states kept for system messages other than the current one (a persona or mode switch).
MAX_SAVED_PREFIXES = 3
#: How long a prefill waits for the engine (a background summary stopping as the user starts to speak).
PREFILL_LOCK_WAIT_S = 2.0


@dataclass(frozen=True)
class PromptStats:
    """How one request's prompt was evaluated: its tokens, and how many came from the previous state."""

    prompt_tokens: int
    reused_tokens: int
    #: Seconds spent restoring a saved state (a switch back to another system message), else 0.
    restore_s: float = 0.0

    @property
    def evaluated_tokens(self) -> int:
        return self.prompt_tokens - self.reused_tokens


@dataclass(frozen=True)
class _SavedState:
    """llama.cpp's memory (sequence 0) and the tokens it holds."""

    tokens: tuple[int, ...]
    data: bytes


def transcript_prompt(messages: list[ChatMessage]) -> str:
    """Messages -> a written dialogue that a base model (no chat tuning) continues with one line.

    Small base models echo instructions given as a chat turn; a transcript under a header they continue
    in character. The reply ends at the line break (the caller stops there).
    """
    system = next((m for m in messages if m.role == "system"), None)
    name = (system.name if system else None) or "アシスタント"
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    is_english = not has_japanese(last_user)
    user = "Friend" if is_english else "相手"
    # A small base model continues in the language of what it reads: for an English turn it reads an
    # English frame and only the English part of the conversation.
    header = system.content.strip() if system and not is_english else ""
    intro = (f"What follows is a conversation between {name} and a friend. {name} is kind and answers in "
             f"English, in one or two short sentences." if is_english
             else f"以下は、{name}と{user}の会話です。{name}は一、二文の短い話し言葉で答えます。")
    lines = [header, "", intro, ""] if header else [intro, ""]
    for message in messages:
        if message.role == "system" or (is_english and has_japanese(message.content)):
            continue
        speaker = name if message.role == "assistant" else user
        lines.append(f"{speaker}: {' '.join(message.content.split())}")
    lines.append(f"{name}:")
    return "\n".join(lines)


def fold_into_turns(messages: list[ChatMessage]) -> str:
    """Messages -> a Gemma-format prompt; the system message is folded into the first user turn
    (Gemma has no system role, and llama.cpp's built-in 'gemma' format drops it)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    parts: list[str] = []
    pending_system = system
    for message in messages:
        if message.role == "system":
            continue
        role = "model" if message.role == "assistant" else "user"
        content = message.content
        if role == "user" and pending_system:
            content = f"{pending_system}\n\n{content}"
            pending_system = ""
        parts.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
    if pending_system:
        parts.insert(0, f"<start_of_turn>user\n{pending_system}<end_of_turn>\n")
    return "".join(parts) + "<start_of_turn>model\n"


class _LoaderStderr(io.TextIOBase):
    """``sys.stderr`` while llama.cpp loads a model: what the loading threads print goes to the log, what
    every other thread writes (the turn lines, a warning) passes through to the real stream."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self.loaders: set[int] = set()

    def write(self, text: str) -> int:
        if threading.get_ident() in self.loaders:
            if text.strip():
                native_log.debug("%s", text.rstrip())
            return len(text)
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def loader_output_to_log() -> Iterator[None]:
    """Keep what llama-cpp-python prints while this thread loads a model off the user's screen.

    Loaded with ``verbose=False``, llama-cpp-python would point the whole process's stdout and stderr (file
    descriptors 1 and 2 and ``sys.stdout``/``sys.stderr``) at /dev/null for the load, and a turn line printed
    by the event loop meanwhile was lost. So models load with ``verbose=True`` inside this: llama.cpp's own
    log goes through a log callback (:func:`_route_native_log`), the Python-level lines of the loading
    thread go to the log, and nothing else is touched."""
    me = threading.get_ident()
    with _stderr_lock:
        proxy = sys.stderr if isinstance(sys.stderr, _LoaderStderr) else _LoaderStderr(sys.stderr)
        sys.stderr = proxy
        proxy.loaders.add(me)
    try:
        yield
    finally:
        with _stderr_lock:
            proxy.loaders.discard(me)
            if not proxy.loaders and sys.stderr is proxy:
                sys.stderr = proxy.real


_native_callback: Any = None


def _route_native_log() -> None:
    """llama.cpp's log lines (model loading, cache notes) go to the ``llama.cpp`` logger at DEBUG (-vv)."""
    global _native_callback
    if _native_callback is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        del level, user_data
        line = text.decode("utf-8", errors="replace").rstrip()
        if line:
            native_log.debug("%s", line)

    _native_callback = callback  # kept alive: llama.cpp holds only the C pointer
    llama_cpp.llama_log_set(callback, None)


class EmbeddedEngine:
    """Runs a GGUF model with llama.cpp in a worker thread; tokens cross to the event loop one by one.

    Closing the stream sets a flag the worker checks between tokens, so an abandoned reply stops at once.
    """

    def __init__(self, name: str, config: EngineConfig, base_dir: Path | None = None) -> None:
        self.name = name
        self.config = config
        self._base_dir = base_dir
        self._llama: Any = None
        #: chat (the model's own template), transcript (a written dialogue, for base models) or gemma turns.
        self.prompt_style = "transcript"
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        #: Set while a stream that nobody reads any more (a cancelled turn, a closing engine) still evaluates:
        #: llama.cpp's abort callback asks it between graph nodes, so even a long prompt stops at once.
        self._abandoned: threading.Event | None = None
        self._is_closing = False
        self._abort_callback: Any = None
        self.location = f"embedded:{config.model}"
        self._template: Any = None
        #: The system message the model's evaluated state belongs to, and saved states of others.
        self._prefix_key: str | None = None
        self._saved: OrderedDict[str, _SavedState] = OrderedDict()
        #: How the last request's prompt was evaluated (chat style only).
        self.last_stats: PromptStats | None = None

    def _model_path(self) -> Path:
        path = Path(resolve_model(self.config.model, self._base_dir))
        if not path.is_file():
            raise ModelMissing(
                f"engine {self.name}: GGUF model not found at {path} — set `model` in routing.yaml to a .gguf file "
                f"or offline:gemma3-270m"
            )
        return path

    def load(self) -> Any:
        """Load the model once (blocking; call it off the event loop)."""
        with self._load_lock:
            if self._llama is not None:
                return self._llama
            try:
                from llama_cpp import Llama
            except ImportError:
                raise MissingExtra("llama-cpp-python", "embedded", "the embedded LLM engine") from None
            path = self._model_path()
            threads = self.config.n_threads or cpu_threads("llm")
            try:
                chat_format = None if self.config.chat_format in ("transcript", "gemma") else self.config.chat_format
                _route_native_log()
                with loader_output_to_log():
                    llama = Llama(model_path=str(path), n_ctx=self.config.n_ctx, n_threads=threads,
                                  n_threads_batch=threads, chat_format=chat_format, verbose=True)
                llama.verbose = False  # no per-reply timing lines on stderr
            except Exception as exc:
                raise ModelMissing(f"engine {self.name}: cannot load {path.name} ({exc}) — check the file or `saijin doctor`") from None
            metadata = getattr(llama, "metadata", {}) or {}
            has_template = "tokenizer.chat_template" in metadata
            if self.config.chat_format in ("transcript", "gemma"):
                self.prompt_style = self.config.chat_format
            elif self.config.chat_format or has_template:
                self.prompt_style = "chat"
                if not self.config.chat_format:
                    self._template = _template_of(llama)
            else:
                self.prompt_style = "transcript"
            self._is_closing = False
            self._watch_for_abandon(llama)
            self._llama = llama
            self.location = f"embedded:{path.name}"
            log.info("embedded engine %s loaded %s (prompt style: %s)", self.name, path.name, self.prompt_style)
            return llama

    def _generate(self, messages: list[ChatMessage], generation: GenerationConfig) -> Generator[str, None, None]:
        llama = self.load()
        params: dict[str, Any] = {
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "max_tokens": generation.max_tokens,
            "repeat_penalty": self.config.repeat_penalty,
            "stream": True,
        }
        style = self.prompt_style
        if style == "chat" and self._template is not None:
            yield from self._chat_from_template(llama, messages, generation, params)
            return
        if style == "chat":
            chunks = llama.create_chat_completion([m.as_dict() for m in messages], stop=generation.stop or None, **params)
            for chunk in chunks:
                text = chunk["choices"][0].get("delta", {}).get("content")
                if text:
                    yield text
            return
        if style == "gemma":
            prompt, stops = fold_into_turns(messages), [*_TURN_STOPS, *generation.stop]
        else:
            prompt, stops = transcript_prompt(messages), ["\n", *generation.stop]
        first = True
        for chunk in llama.create_completion(prompt, stop=stops, **params):
            text = chunk["choices"][0].get("text")
            if first and text:
                text = text.lstrip()
            if text:
                first = False
                yield text

    def _chat_from_template(self, llama: Any, messages: list[ChatMessage], generation: GenerationConfig,
                            params: dict[str, Any]) -> Iterator[str]:
        """The model's own chat template, rendered and tokenized here (as llama-cpp-python's chat handler does)
        so that the evaluated prefix can be kept per system message and measured."""
        rendered = self._template(messages=[m.as_dict() for m in messages])
        tokens = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        restore_s = self._switch_prefix(llama, messages[0].content if messages and messages[0].role == "system" else "")
        reused = llama.longest_token_prefix(llama._input_ids.tolist(), tokens) if llama.n_tokens else 0
        self.last_stats = PromptStats(len(tokens), min(reused, len(tokens)), restore_s)
        log.debug("embedded engine %s: prompt of %d tokens, %d evaluated (%d kept from the last turn)", self.name,
                  len(tokens), self.last_stats.evaluated_tokens, self.last_stats.reused_tokens)
        stops = [*(rendered.stop or []), *generation.stop]
        for chunk in llama.create_completion(tokens, stop=stops, **params):
            text = chunk["choices"][0].get("text")
            if text:
                yield text

    async def prefill(self, messages: list[ChatMessage]) -> None:
        """Evaluate what the next request will start with — ``messages`` (the system message and the
        conversation so far) and the template's opening of the next user message — so that the request
        reads only the user's words. Skipped when the engine stays busy or the style has no template; the
        next request reuses whatever matches (`llama.longest_token_prefix`)."""
        if self._llama is None or self.prompt_style != "chat" or self._template is None:
            return
        await asyncio.to_thread(self._prefill, messages)

    def _prefill(self, messages: list[ChatMessage]) -> None:
        CORES.wait_while_urgent()
        # Called while no reply is written: a holder is a background summary, which stops as the user speaks.
        if not self._run_lock.acquire(timeout=PREFILL_LOCK_WAIT_S):
            return
        try:
            llama = self._llama
            if llama is None or self._is_closing:
                return
            tokens = self._opening_tokens(llama, messages)
            self._switch_prefix(llama, messages[0].content if messages and messages[0].role == "system" else "")
            reused = llama.longest_token_prefix(llama._input_ids.tolist(), tokens) if llama.n_tokens else 0
            if reused < len(tokens):
                started = time.perf_counter()
                llama.n_tokens = reused
                llama.eval(tokens[reused:])
                log.debug("embedded engine %s: read %d tokens of the next request ahead (%.0f ms)", self.name,
                          len(tokens) - reused, (time.perf_counter() - started) * 1000)
        except Exception:  # only a head start: the request itself evaluates whatever is missing
            log.debug("embedded engine %s: prefill failed", self.name, exc_info=True)
        finally:
            self._run_lock.release()

    def _opening_tokens(self, llama: Any, messages: list[ChatMessage]) -> list[int]:
        """The tokens of ``messages`` rendered by the model's template up to where a next user message's
        words would begin."""
        marker = "\u2063SAIJIN\u2063"
        rendered = self._template(messages=[*(m.as_dict() for m in messages), {"role": "user", "content": marker}])
        opening = rendered.prompt[: rendered.prompt.index(marker)]
        return list(llama.tokenize(opening.encode("utf-8"), add_bos=not rendered.added_special, special=True))

    def _switch_prefix(self, llama: Any, key: str) -> float:
        """Another system message than the evaluated one: save this one's state, restore the other's if saved."""
        if key == self._prefix_key:
            return 0.0
        started = time.perf_counter()
        if self._prefix_key is not None and llama.n_tokens:
            self._saved[self._prefix_key] = _save_sequence(llama)
            self._saved.move_to_end(self._prefix_key)
            while len(self._saved) > MAX_SAVED_PREFIXES:
                self._saved.popitem(last=False)
        self._prefix_key = key
        saved = self._saved.pop(key, None)
        if saved is not None and not _restore_sequence(llama, saved):
            log.info("embedded engine %s: could not restore a saved prompt state; evaluating it again", self.name)
        return time.perf_counter() - started

    def _watch_for_abandon(self, llama: Any) -> None:
        """Let llama.cpp give up a decode whose stream was closed (or whose engine is closing)."""
        try:
            import llama_cpp

            def should_abort(_data: Any) -> bool:
                return self._is_closing or (self._abandoned is not None and self._abandoned.is_set())

            self._abort_callback = llama_cpp.ggml_abort_callback(should_abort)
            llama_cpp.llama_set_abort_callback(llama.ctx, self._abort_callback, None)
        except Exception:  # an older build without the call: streams stop at the next token instead
            log.debug("llama.cpp abort callback not available", exc_info=True)

    async def stream(self, messages: list[ChatMessage], generation: GenerationConfig) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def hand_over(item: object) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                with self._run_lock:
                    if stop.is_set() or self._is_closing:
                        return
                    self._abandoned = stop
                    generator = self._generate(messages, generation)
                    try:
                        # Between tokens the model gives the cores to work the user waits for (CORES).
                        CORES.wait_while_urgent(stop.is_set)
                        for piece in generator:
                            if stop.is_set():
                                break
                            hand_over(piece)
                            CORES.wait_while_urgent(stop.is_set)
                    finally:
                        generator.close()
                        self._abandoned = None
            except BaseException as exc:  # handed to the event loop and raised there (unless abandoned)
                if not stop.is_set():
                    hand_over(exc)
            finally:
                hand_over(_END)

        worker = loop.run_in_executor(None, work)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, ModelMissing | MissingExtra):
                    raise item
                if isinstance(item, BaseException):
                    raise EngineUnavailable(f"the embedded model {self.location} failed: {item}") from None
                yield str(item)
        finally:
            stop.set()
            # The worker notices the flag after its current token; don't wait for it here.
            worker.add_done_callback(lambda _f: None)

    async def check(self) -> None:
        await asyncio.to_thread(self.load)

    async def aclose(self) -> None:
        """Free the model — once no worker is decoding with it (a stream closed mid-prompt still runs its
        evaluation to the end; freeing the model under it crashes the process)."""
        def close_when_idle() -> None:
            self._is_closing = True  # a decode in progress gives up at once (the abort callback)
            with self._run_lock:
                self._saved.clear()
                self._prefix_key = None
                llama, self._llama = self._llama, None
                if llama is not None and hasattr(llama, "close"):
                    llama.close()

        await asyncio.to_thread(close_when_idle)


def _template_of(llama: Any) -> Any:
    """The GGUF's own chat template as llama-cpp-python builds it (same tokens as its chat handler)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    model = llama._model
    return Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )


def _save_sequence(llama: Any) -> _SavedState:
    """The evaluated tokens of sequence 0 and llama.cpp's memory for them (not the logits buffer, which
    ``Llama.save_state`` copies whole: hundreds of MB for a large vocabulary)."""
    import ctypes

    import llama_cpp

    ctx = llama._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
    return _SavedState(tuple(llama._input_ids.tolist()), ctypes.string_at(buffer, written))


def _restore_sequence(llama: Any, saved: _SavedState) -> bool:
    """Put a saved sequence back; the next prompt then reuses it as its prefix. False if llama.cpp refused."""
    import ctypes

    import llama_cpp

    ctx = llama._ctx.ctx
    llama._ctx.kv_cache_seq_rm(-1, 0, -1)
    buffer = (ctypes.c_uint8 * len(saved.data)).from_buffer_copy(saved.data)
    if not saved.data or llama_cpp.llama_state_seq_set_data(ctx, buffer, len(saved.data), 0) == 0:
        llama.n_tokens = 0
        return False
    count = len(saved.tokens)
    llama.input_ids[:count] = saved.tokens
    llama.n_tokens = count
    llama._requires_eval = True  # logits are not restored: a prompt equal to the state evaluates its last token
    return True

"""An OpenAI-compatible streaming engine (vLLM, Ollama's /v1, any compatible server) via the `openai` client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from urllib.parse import urlparse

from assistant.config.schema import EngineConfig, GenerationConfig
from assistant.errors import EngineUnavailable
from assistant.llm.engine import ChatMessage

log = logging.getLogger(__name__)


def _hint(kind: str) -> str:
    if kind == "vllm":
        return "start it with `saijin llm serve` or check `saijin doctor`"
    if kind == "ollama":
        return "start Ollama (`ollama serve`) or check `saijin doctor`"
    return "check that the server runs and the URL is right (`saijin doctor`)"


class OpenAIEngine:
    """Streams chat completions from an OpenAI-compatible server. Cancelling the stream closes the HTTP
    response, which makes vLLM abort the request."""

    def __init__(self, name: str, config: EngineConfig) -> None:
        import openai  # light, but keep the engine modules symmetrical

        if not config.base_url:
            raise EngineUnavailable(f"engine {name}: no base_url configured — set it in routing.yaml")
        self.name = name
        self.config = config
        self.location = config.base_url
        self._openai = openai
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "EMPTY",
            timeout=config.timeout_s,
            max_retries=0,
        )

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        openai = self._openai
        if isinstance(exc, openai.APITimeoutError):
            why = "timed out"
        elif isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            text = str(cause).lower()
            why = "connection refused" if "refused" in text or "connect" in text else f"connection failed: {cause}"
        elif isinstance(exc, openai.NotFoundError):
            return EngineUnavailable(
                f"the LLM at {self.location} has no model {self.config.model!r} — check `model` in routing.yaml "
                f"or --llm-model (the server lists its models at {self.location.rstrip('/')}/models)"
            )
        elif isinstance(exc, openai.APIStatusError):
            return EngineUnavailable(
                f"the LLM at {self.location} refused the request (HTTP {exc.status_code}: {_short(exc.message)}) — "
                f"check the engine's settings in routing.yaml (model, max_model_len) and its log"
            )
        else:
            why = _short(str(exc)) or type(exc).__name__
        return EngineUnavailable(f"cannot reach the LLM at {self.location} ({why}) — {_hint(self.config.kind)}")

    async def stream(self, messages: list[ChatMessage], generation: GenerationConfig) -> AsyncGenerator[str, None]:
        kwargs: dict[str, object] = {
            "model": self.config.model,
            "messages": [m.as_dict() for m in messages],
            "stream": True,
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "max_tokens": generation.max_tokens,
        }
        if generation.stop:
            kwargs["stop"] = generation.stop
        if generation.extra:
            kwargs["extra_body"] = dict(generation.extra)
        try:
            response = await asyncio.wait_for(
                self._client.chat.completions.create(**kwargs),  # type: ignore[call-overload]
                timeout=self.config.first_token_timeout_s,
            )
        except TimeoutError:
            raise EngineUnavailable(
                f"the LLM at {self.location} did not start answering within {self.config.first_token_timeout_s:g} s — "
                f"{_hint(self.config.kind)}"
            ) from None
        except self._openai.OpenAIError as exc:
            raise self._unavailable(exc) from None
        is_finished = False
        try:
            async for chunk in response:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta is not None and choice.delta.content:
                    yield choice.delta.content
                if choice.finish_reason:
                    is_finished = True
            if not is_finished:
                # The connection closed without the server saying the reply was complete (it died).
                raise EngineUnavailable(
                    f"the LLM at {self.location} stopped mid-reply (the connection closed) — {_hint(self.config.kind)}"
                )
        except self._openai.OpenAIError as exc:
            raise self._unavailable(exc) from None
        except EngineUnavailable:
            raise
        except Exception as exc:  # the connection dropped mid-stream (httpx errors)
            raise EngineUnavailable(
                f"the LLM at {self.location} stopped mid-reply ({_short(str(exc)) or type(exc).__name__}) — "
                f"{_hint(self.config.kind)}"
            ) from None
        finally:
            await response.close()

    async def check(self) -> None:
        try:
            models = await asyncio.wait_for(self._client.models.list(), timeout=min(5.0, self.config.timeout_s))
        except TimeoutError:
            raise EngineUnavailable(f"cannot reach the LLM at {self.location} (timed out) — {_hint(self.config.kind)}") from None
        except self._openai.OpenAIError as exc:
            raise self._unavailable(exc) from None
        names = [m.id for m in models.data]
        if self.config.model not in names:
            raise EngineUnavailable(
                f"the LLM at {self.location} serves {', '.join(names) or 'no models'}, not {self.config.model!r} — "
                f"fix `model` in routing.yaml or pass --llm-model"
            )

    async def aclose(self) -> None:
        await self._client.close()


def _short(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def host_of(url: str) -> str:
    return urlparse(url).netloc

"""The `ChatEngine` interface every language-model backend implements, and the messages it takes."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from assistant.config.schema import GenerationConfig

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    #: On the system message: the persona's name, for engines that write the dialogue as a transcript.
    name: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class ChatEngine(Protocol):
    """A language model that streams a reply to a list of chat messages."""

    name: str
    #: Where it runs, for messages (a URL, or "embedded:<file>").
    location: str

    def stream(self, messages: list[ChatMessage], generation: GenerationConfig) -> AsyncGenerator[str, None]:
        """Yield the reply's text as it is generated. Closing the iterator aborts the request.

        Raises EngineUnavailable (one line for the user) when the engine cannot answer.
        """
        ...

    async def check(self) -> None:
        """Raise EngineUnavailable unless the engine is ready to answer (cheap; used by doctor and fallback)."""

    async def aclose(self) -> None:
        """Release connections, threads and models."""


@runtime_checkable
class Prefills(Protocol):
    """An engine that can read the start of its next request ahead of time (the embedded engine)."""

    async def prefill(self, messages: list[ChatMessage]) -> None:
        """Evaluate ``messages`` and the opening of the next user message; a head start, never required."""

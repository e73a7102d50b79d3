"""The bridge as a pipeline stage: it starts the server with the pipeline and emits what pages send.

The stage accepts nothing; events reach the pages through the bus (wire it with
``pipeline.bus.subscribe(server.publish)``). Page input (typed text, microphone audio, interrupt, persona and
mode requests, playback reports) comes out of the stage as events via ``self.emit``.
"""

from __future__ import annotations

from assistant.events import Event
from assistant.stage import Stage, StageContext
from live2d_bridge.server import BridgeServer


class BridgeStage(Stage):
    """Runs a :class:`BridgeServer` for the pipeline's lifetime and emits the pages' input as events."""

    def __init__(self, server: BridgeServer, ignore: tuple[type[Event], ...] = ()) -> None:
        super().__init__()
        self.server = server
        #: Page messages the pipeline does not want (e.g. playback reports when its own output keeps time).
        self.ignore = ignore
        server.on_input = self.on_input

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        await self.server.start()

    def on_input(self, event: Event) -> None:
        if not isinstance(event, self.ignore):
            self.emit(event)

    async def stop(self) -> None:
        await self.server.stop()

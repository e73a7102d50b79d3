"""The pipeline: stages that turn events into events, the bus observers watch, and the wiring."""

from assistant.pipeline.bus import Bus
from assistant.pipeline.stage import Stage, StageContext, run_stage

__all__ = ["Bus", "Stage", "StageContext", "run_stage"]

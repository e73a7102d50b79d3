"""Configuration: the YAML files under config/, validated into typed settings."""

from assistant.config.loader import Settings, load_settings
from assistant.config.schema import (
    AssistantConfig,
    EngineConfig,
    PersonaConfig,
    RoutingConfig,
    RulesConfig,
    VoiceConfig,
)

__all__ = [
    "AssistantConfig",
    "EngineConfig",
    "PersonaConfig",
    "RoutingConfig",
    "RulesConfig",
    "Settings",
    "VoiceConfig",
    "load_settings",
]

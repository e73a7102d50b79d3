"""Loading config/: YAML files, the profile overlay, and one-line error messages naming file and field."""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from assistant.config.schema import AssistantConfig, PersonaConfig, RoutingConfig, RulesConfig
from assistant.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
M = TypeVar("M", bound=BaseModel)


@dataclass
class Settings:
    """Everything configured, validated: the four kinds of file plus where they came from."""

    config_dir: Path
    profile: str
    assistant: AssistantConfig
    rules: RulesConfig
    routing: RoutingConfig
    personas: dict[str, PersonaConfig]
    overrides: dict[str, Any] = field(default_factory=dict)

    def resolve(self, value: str | os.PathLike[str]) -> Path:
        """A path from the config, relative to the config folder unless absolute (``~`` expanded)."""
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() else (self.config_dir / path).resolve()

    @property
    def data_dir(self) -> Path:
        """Where state lives (memory database, last persona, logs); relative paths hang off the project root."""
        path = Path(os.path.expanduser(self.assistant.data_dir))
        return path if path.is_absolute() else (self.config_dir.parent / path).resolve()

    def data_path(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (self.config_dir.parent / path).resolve()

    def persona(self, persona_id: str) -> PersonaConfig:
        try:
            return self.personas[persona_id]
        except KeyError:
            raise ConfigError(
                f"no persona named {persona_id!r} — choose one of: {', '.join(sorted(self.personas))}"
            ) from None


def default_config_dir() -> Path:
    """`$SAIJIN_CONFIG`, else ./config when it holds assistant.yaml, else the project's own config/."""
    env = os.environ.get("SAIJIN_CONFIG")
    if env:
        return Path(env).expanduser().resolve()
    local = Path.cwd() / "config"
    if (local / "assistant.yaml").is_file():
        return local.resolve()
    return REPO_ROOT / "config"


def cuda_present() -> bool:
    """A cheap CUDA check that does not import torch: the NVIDIA driver's tools or device files."""
    if os.environ.get("SAIJIN_FORCE_CPU"):
        return False
    return bool(shutil.which("nvidia-smi")) or Path("/dev/nvidia0").exists() or Path("/usr/lib/wsl/lib/libcuda.so").exists()


def load_settings(config_dir: str | os.PathLike[str] | None = None, profile: str | None = None) -> Settings:
    """Read and validate config/; raise ConfigError with one line on the first problem found."""
    root = Path(config_dir).expanduser().resolve() if config_dir else default_config_dir()
    if not root.is_dir():
        raise ConfigError(f"{root}: configuration folder not found — pass --config DIR or create it")

    assistant_raw = _read_yaml(root / "assistant.yaml", required=True)
    rules_raw = _read_yaml(root / "rules.yaml", required=True)
    routing_raw = _read_yaml(root / "routing.yaml", required=True)
    persona_files = sorted((root / "personas").glob("*.yaml")) if (root / "personas").is_dir() else []
    if not persona_files:
        raise ConfigError(f"{root / 'personas'}: no persona files (*.yaml) found — add at least one persona")
    personas_raw = {path.stem: (_read_yaml(path, required=True), path) for path in persona_files}

    chosen = profile or (assistant_raw.get("profile") if isinstance(assistant_raw, dict) else None) or "auto"
    if chosen == "auto":
        chosen = "gpu" if cuda_present() else "cpu"
    overlay_path = root / "profiles" / f"{chosen}.yaml"
    overlay: dict[str, Any] = {}
    if chosen != "none":
        if not overlay_path.is_file():
            available = sorted(p.stem for p in (root / "profiles").glob("*.yaml")) if (root / "profiles").is_dir() else []
            raise ConfigError(
                f"{overlay_path}: profile {chosen!r} not found — use one of: {', '.join(available) or '(none)'}"
            )
        overlay = _read_yaml(overlay_path, required=True)
        unknown = set(overlay) - {"assistant", "rules", "routing", "personas"}
        if unknown:
            raise ConfigError(
                f"{overlay_path}: {sorted(unknown)[0]}: unknown section — a profile may hold assistant, rules, routing, personas"
            )

    def merged(raw: Any, section: str) -> Any:
        extra = overlay.get(section)
        return deep_merge(raw, extra) if isinstance(extra, dict) and isinstance(raw, dict) else raw

    assistant = _validate(AssistantConfig, merged(assistant_raw, "assistant"), root / "assistant.yaml", overlay_path)
    rules = _validate(RulesConfig, merged(rules_raw, "rules"), root / "rules.yaml", overlay_path)
    routing = _validate(RoutingConfig, merged(routing_raw, "routing"), root / "routing.yaml", overlay_path)
    persona_overlays = overlay.get("personas") or {}
    personas: dict[str, PersonaConfig] = {}
    for stem, (raw, path) in personas_raw.items():
        extra = persona_overlays.get(stem)
        data = deep_merge(raw, extra) if isinstance(extra, dict) and isinstance(raw, dict) else raw
        persona = _validate(PersonaConfig, data, path, overlay_path)
        if persona.id != stem:
            raise ConfigError(f"{path}: id: must match the file name {stem!r} (got {persona.id!r})")
        if persona.engine and persona.engine not in routing.engines:
            raise ConfigError(f"{path}: engine: no engine named {persona.engine!r} in routing.yaml")
        personas[persona.id] = persona
    for persona_id in routing.personas:
        if persona_id not in personas:
            raise ConfigError(f"{root / 'routing.yaml'}: personas.{persona_id}: no persona file named {persona_id}.yaml")
    if assistant.persona not in personas:
        raise ConfigError(
            f"{root / 'assistant.yaml'}: persona: no persona named {assistant.persona!r} "
            f"(have: {', '.join(sorted(personas))})"
        )
    return Settings(root, chosen, assistant, rules, routing, personas)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overlay`` laid over it; nested mappings merge, everything else replaces."""
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _read_yaml(path: Path, required: bool) -> Any:
    if not path.is_file():
        if required:
            raise ConfigError(f"{path}: file not found — every config folder needs it (see docs/configuration.md)")
        return {}
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{path}: {where}YAML syntax error: {problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values (got {type(data).__name__})")
    return data


def _validate(model: type[M], data: Any, path: Path, overlay_path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as 'field.path: what is wrong (got VALUE)'."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key (check the spelling; see docs/configuration.md)"
    elif kind == "missing":
        message = "required but missing"
    else:
        message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    show_input = kind not in ("missing", "extra_forbidden") and not isinstance(given, dict | list)
    suffix = f" (got {given!r})" if show_input else ""
    return f"{location or '(top level)'}: {message}{suffix}"

"""The persona's reaction map: the face a persona makes at the user's state is kind, never hostile."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from assistant.config.schema import CANONICAL_EMOTIONS, HOSTILE_FACES, AvatarConfig, PersonaConfig

PERSONAS = Path(__file__).resolve().parents[2] / "config" / "personas"


@pytest.mark.parametrize("path", sorted(PERSONAS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_personas_meet_low_moods_with_concern_and_anger_without_anger(path: Path) -> None:
    avatar = PersonaConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).avatar
    assert avatar.reaction_to("sad") == "concerned" and avatar.reaction_to("tired") == "gentle"
    assert avatar.reaction_to("angry") == "concerned"
    assert avatar.reaction_to("neutral") is None and avatar.reaction_to(None) is None
    for state in CANONICAL_EMOTIONS:
        reaction = avatar.reaction_to(state)
        if reaction is not None:
            assert avatar.expressions.get(reaction, reaction) not in HOSTILE_FACES


def test_reactions_default_and_override() -> None:
    assert AvatarConfig().reaction_to("tired") == "gentle"
    avatar = AvatarConfig(reactions={"happy": "neutral", "sad": "shy"})
    assert avatar.reaction_to("happy") is None and avatar.reaction_to("sad") == "shy"
    assert avatar.reaction_to("angry") == "concerned"


@pytest.mark.parametrize("reactions, expressions, says", [
    ({"angry": "angry"}, {}, "reactions.angry: 'angry' is a hostile face"),
    ({"sad": "pout"}, {"angry": "pout"}, "reactions.sad: 'pout' is a hostile face"),
    ({"grumpy": "calm"}, {}, "reactions: 'grumpy' is not one of"),
])
def test_a_hostile_or_unknown_reaction_is_one_clear_line(reactions: dict[str, str], expressions: dict[str, str],
                                                        says: str) -> None:
    with pytest.raises(ValidationError) as exc:
        AvatarConfig(reactions=reactions, expressions=expressions)
    assert says in str(exc.value)

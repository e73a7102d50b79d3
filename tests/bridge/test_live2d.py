"""Live2D mode in a real browser: the "Haru" sample of the npm package live2dcubismcore (with Cubism Core 4.2),
rendered by pixi.js 6.5.10 + pixi-live2d-display 0.4.0, all installed from npm at test time (never committed).
Emotions reach the model's expressions through the persona's map; the mouth values drive ParamMouthOpenY."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from assistant.audio.lipsync import mouth_values
from assistant.config.schema import PersonaConfig
from assistant.events import Audio, Expression, State, Subtitle, UserEmotion, UserTranscript
from live2d_bridge.assets import Live2DPaths
from tests.fixtures.bridge import MakeBridge, open_page, record_frames, screenshot

pytestmark = pytest.mark.browser

HARU = "live2dcubismcore/characters/haru_greeter_pro_jp/runtime"
#: Expressions written by the test for the real model (Haru ships none): the persona's map points at them.
EXPRESSIONS = {
    "smile": [{"Id": "ParamEyeLSmile", "Value": 1, "Blend": "Add"}, {"Id": "ParamEyeRSmile", "Value": 1, "Blend": "Add"},
              {"Id": "ParamEyeLOpen", "Value": 0, "Blend": "Multiply"}, {"Id": "ParamEyeROpen", "Value": 0, "Blend": "Multiply"},
              {"Id": "ParamMouthForm", "Value": 1, "Blend": "Add"}],
    "teary": [{"Id": "ParamTear", "Value": 1, "Blend": "Add"}, {"Id": "ParamBrowLForm", "Value": -1, "Blend": "Add"},
              {"Id": "ParamBrowRForm", "Value": -1, "Blend": "Add"}, {"Id": "ParamMouthForm", "Value": -1, "Blend": "Add"}],
}


@pytest.fixture
def haru_persona(live2d_node_modules: Path, tmp_path: Path, bridge_personas: list[PersonaConfig]) -> PersonaConfig:
    """A persona showing Haru: a copy of the sample's runtime folder plus two expression files."""
    model_dir = tmp_path / "haru"
    shutil.copytree(live2d_node_modules / HARU, model_dir)
    settings_path = model_dir / "haru_greeter_t03.model3.json"
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    (model_dir / "exp").mkdir()
    settings["FileReferences"]["Expressions"] = []
    for name, parameters in EXPRESSIONS.items():
        (model_dir / "exp" / f"{name}.exp3.json").write_text(json.dumps(
            {"Type": "Live2D Expression", "FadeInTime": 0.2, "FadeOutTime": 0.2, "Parameters": parameters}))
        settings["FileReferences"]["Expressions"].append({"Name": name, "File": f"exp/{name}.exp3.json"})
    settings_path.write_text(json.dumps(settings), encoding="utf-8")
    base = bridge_personas[0].model_dump()
    base["avatar"]["live2d"] = {"core_script": str(live2d_node_modules / "live2dcubismcore" / "live2dcubismcore.min.js"),
                                "model": str(settings_path), "scale": 1.0}
    base["avatar"]["expressions"] = {"happy": "smile", "joy": "smile", "sad": "teary", "fearful": "teary"}
    return PersonaConfig.model_validate(base)


def canvas_pixels(data_url: str) -> np.ndarray:
    png = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


async def wait_live2d(page: Any) -> None:
    await page.wait_for_function("() => saijin.avatarKind === 'live2d' || saijin.live2dError", timeout=90000)
    error = await page.evaluate("() => saijin.live2dError")
    assert error is None, f"Live2D did not load: {error}"


async def test_haru_renders_and_follows_expressions_and_the_mouth(
        make_bridge: MakeBridge, browser: Any, haru_persona: PersonaConfig, live2d_node_modules: Path,
        bridge_personas: list[PersonaConfig]) -> None:
    bridge = await make_bridge(personas=[haru_persona, bridge_personas[1]],
                               live2d_paths=Live2DPaths.from_node_modules(live2d_node_modules))
    page, errors = await open_page(browser, bridge.server.url)
    await wait_live2d(page)
    assert not await page.locator("#live2d-note").is_visible()
    await page.wait_for_timeout(1500)  # the first frames (textures upload on SwiftShader)

    # Draw a frame and read it back in the same task (the drawing buffer is not preserved between frames).
    pixels = canvas_pixels(await page.evaluate(
        "() => { saijin.live2dAvatar.renderFrame(); return document.querySelector('.live2d-canvas').toDataURL('image/png'); }"))
    drawn = pixels[..., 3] > 0
    assert drawn.mean() > 0.05, f"the canvas is blank ({drawn.mean():.3%} drawn)"
    assert pixels[drawn][:, :3].std() > 20, "the canvas holds no picture, only a flat colour"

    bridge.publish(Expression(persona="yuuri", name="joy"))
    await page.wait_for_function("() => saijin.live2dShownExpression === 'smile'", timeout=10000)
    bridge.publish(Expression(persona="yuuri", name="sad"))
    await page.wait_for_function("() => saijin.live2dShownExpression === 'teary'", timeout=10000)
    bridge.publish(Expression(persona="yuuri", name="neutral"))
    await page.wait_for_function("() => saijin.live2dShownExpression === null", timeout=10000)

    # Loud, silent, loud: ParamMouthOpenY opens and closes with the audio as it is heard.
    rate = 24000
    t = np.arange(int(0.9 * rate)) / rate
    loud = (np.sin(2 * np.pi * 220 * t) * 0.8).astype(np.float32)
    samples = np.concatenate([loud, np.zeros_like(loud), loud])
    bridge.publish(UserTranscript(turn_id=1, text="ハルさん、こんにちは"),
                   UserEmotion(turn_id=1, label="happy", score=0.9, scores={"happy": 0.9}),
                   Expression(persona="yuuri", name="happy", turn_id=1), State(value="speaking"),
                   Subtitle(turn_id=1, persona="yuuri", sentence_index=0, text="こんにちは。今日はいい天気ですね。"),
                   Audio(turn_id=1, sentence_index=0, sample_rate=rate, samples=samples,
                         mouth=mouth_values(samples, rate)))
    await page.wait_for_function("() => saijin.isPlaying", timeout=10000)
    assert await page.evaluate("() => saijin.live2dShownExpression") == "smile"
    readings = await record_frames(page, 3.3)
    checked = 0
    for r in readings:
        head = r["head"]
        if not head:
            continue
        position = head["t"]
        # Near a step the mouth is on its way (smoothing, and a frame's lag at SwiftShader's frame rate).
        if min(abs(position - 0.9), abs(position - 1.8)) < 0.18 or position < 0.15 or position > 2.6:
            continue
        is_loud = position < 0.9 or position > 1.8
        assert (r["param"] > 0.5) == is_loud, f"ParamMouthOpenY is {r['param']:.2f} at {position:.2f} s"
        checked += 1
    assert checked >= 12  # SwiftShader renders slowly: about 15 frames a second here
    await page.wait_for_function("() => !saijin.isPlaying && saijin.live2dMouthParam < 0.02", timeout=3000)
    # A sentence with the mouth open, for the screenshot in docs/.
    longer = np.concatenate([loud, loud, loud])
    bridge.publish(Subtitle(turn_id=1, persona="yuuri", sentence_index=1, text="お散歩に行きたくなりますね。"),
                   Audio(turn_id=1, sentence_index=1, sample_rate=rate, samples=longer, mouth=mouth_values(longer, rate)))
    await page.wait_for_function("() => saijin.isPlaying && saijin.live2dMouthParam > 0.6", timeout=10000)
    assert await page.evaluate("() => saijin.live2dShownExpression") == "smile"
    await screenshot(page, "live2d.png")
    assert [e for e in errors.errors if "WebGL" not in e] == []


async def test_a_broken_live2d_model_falls_back_to_the_built_in_avatar(
        make_bridge: MakeBridge, browser: Any, live2d_node_modules: Path, bridge_personas: list[PersonaConfig],
        tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.model3.json").write_text("{ this is not json")
    persona = bridge_personas[0].model_dump()
    persona["avatar"]["live2d"] = {"core_script": str(live2d_node_modules / "live2dcubismcore" / "live2dcubismcore.min.js"),
                                   "model": str(broken / "model.model3.json")}
    bridge = await make_bridge(personas=[PersonaConfig.model_validate(persona)],
                               live2d_paths=Live2DPaths.from_node_modules(live2d_node_modules))
    page, _errors = await open_page(browser, bridge.server.url)
    await page.wait_for_function("() => saijin.avatarKind === 'builtin'", timeout=60000)
    note = page.locator("#live2d-note")
    assert await note.is_visible()
    assert "内蔵のアバター" in await note.inner_text()
    assert await page.locator(".builtin-avatar").is_visible()


async def test_missing_live2d_libraries_fall_back_with_a_note(
        make_bridge: MakeBridge, browser: Any, haru_persona: PersonaConfig) -> None:
    bridge = await make_bridge(personas=[haru_persona], live2d_paths=Live2DPaths())
    page, errors = await open_page(browser, bridge.server.url)
    await page.wait_for_function("() => saijin.avatarKind === 'builtin'", timeout=30000)
    assert "pixi" in await page.locator("#live2d-note").inner_text()
    assert errors.errors == []

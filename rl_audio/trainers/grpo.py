"""`AudioGRPOTrainer`: TRL's GRPOTrainer with audio in every forward pass and group-level reward fusion.

TRL 1.16 passes images, not audio, to generation and to the log-prob passes. This subclass overrides these methods
(besides `__init__` and `_compute_loss`; the full list, pinned by tests/grpo/test_trl_contract.py, is in docs/grpo.md):

- `_generate_and_score_completions`: builds each prompt's token ids (with the sample's placeholders and timestamps)
  and its audio features, keeps them for the duration of TRL's generation and scoring, and stores the per-sample
  audio tensors in the returned batch so that TRL's shuffling and splitting carry them along with each sample;
- `_tokenize_prompts`: returns those ids and the family's audio tensors, which TRL hands to `generate`;
- `_get_per_token_logps_and_entropies`: the policy, old-policy and reference passes, each slice of TRL's chunked
  batch with the matching slice of audio, the LM head run on the last `logits_to_keep + 1` positions only (TRL's
  fused-head path needs outputs the audio families do not return);
- `_calculate_rewards`: after TRL has gathered the rewards of all processes, applies TimePro-RL's variance-gated
  fusion (eq. 2, `rl_audio.trainers.fusion.RewardFusion`) per group, so groups that span processes fuse exactly as
  on one process.
"""

from __future__ import annotations

import contextlib
import logging

import torch
import trl.trainer.grpo_trainer as trl_grpo
from trl import GRPOTrainer
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from ..data import load_audio
from ..models.base import AudioBatch, last_logits_only
from ..models.loading import check_positions
from ..models.prompting import PromptBuilder
from .card import ModelCardMixin
from .fusion import RewardFusion
from .resume import ExactResumeMixin

logger = logging.getLogger(__name__)

# Generation batches in a row with all advantages 0 before a warning (our choice: a streak of 5 on a random or
# badly formatted model is no accident, and a real run logs it within minutes).
NO_SIGNAL_WARN_AFTER = 5


class RewardError(RuntimeError):
    pass


class GuardedReward:
    """Wraps a reward function: if it raises, the error names the reward and the completion that made it raise."""

    def __init__(self, fn, name: str):
        self.fn, self.__name__ = fn, name

    def __call__(self, completions, **kwargs):
        try:
            return self.fn(completions=completions, **kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised with context
            culprit = self._find_culprit(completions, kwargs)
            raise RewardError(f"reward {self.__name__!r} raised {err!r}{culprit}") from err

    def _find_culprit(self, completions, kwargs) -> str:
        for i, c in enumerate(completions):
            one = {k: ([v[i]] if isinstance(v, list) and len(v) == len(completions) else v) for k, v in kwargs.items()}
            try:
                self.fn(completions=[c], **one)
            except Exception:  # noqa: BLE001 - probing which completion fails
                return f" on completion {i}: {str(c)[:500]!r}"
        return " (no single completion reproduces it)"


@contextlib.contextmanager
def _reference_model_from(factory):
    """TRL builds the reference model with an AutoModel class from the config path; audio families (and added
    timestamp tokens) need rl_audio's loader, so swap the builder while TRL's constructor runs."""
    original = trl_grpo.create_model_from_path
    trl_grpo.create_model_from_path = lambda *args, **kwargs: factory()
    try:
        yield
    finally:
        trl_grpo.create_model_from_path = original


class AudioGRPOTrainer(ExactResumeMixin, ModelCardMixin, GRPOTrainer):
    card_stage = "grpo"

    def __init__(
        self, *args, builder: PromptBuilder, reference_factory=None, fusion: RewardFusion | None = None, **kwargs
    ):
        targs = kwargs["args"]
        if targs.use_vllm:
            raise ValueError(
                "use_vllm is not supported yet: rl_audio does not pass audio to vLLM rollouts, so they would be "
                "generated without audio. Set use_vllm: false."
            )
        self.builder = builder
        # Never sample audio placeholders: one in a completion would be taken for an audio slot (TRL does the
        # same for image tokens).
        reserved = builder.adapter.reserved_token_ids()
        gen_kwargs = dict(targs.generation_kwargs or {})
        gen_kwargs["suppress_tokens"] = sorted(set(gen_kwargs.get("suppress_tokens") or []) | set(reserved))
        targs.generation_kwargs = gen_kwargs
        self._audio: AudioBatch | None = None
        self._silent_batches = 0
        self._prompt_ids: list[list[int]] | None = None
        ctx = _reference_model_from(reference_factory) if reference_factory else contextlib.nullcontext()
        with ctx:
            super().__init__(*args, **kwargs)
        self.fusion = fusion
        if fusion is not None and fusion.columns != self.reward_func_names:
            raise ValueError(f"fusion: reward columns {self.reward_func_names}, the fusion expects {fusion.columns}")

    # ---- prompts and audio -------------------------------------------------------------------------------
    def _model_dtype(self):
        return next(self.model.parameters()).dtype

    def _generate_and_score_completions(self, inputs):
        device = self.accelerator.device
        decoded = {path: load_audio(path) for path in {x["audio"] for x in inputs}}  # each prompt repeats G times
        wavs = [decoded[x["audio"]] for x in inputs]
        enc = self.builder.encode_prompts(wavs, [x["prompt"] for x in inputs])
        self._check_lengths(enc.prompt_ids, inputs)
        self._prompt_ids, self._audio = enc.prompt_ids, enc.audio.to(device)
        try:
            output = super()._generate_and_score_completions(inputs)
            output.update(self._audio.to_dict())  # (B, ...) per sample: TRL's shuffle and split carry it along
        finally:
            self._prompt_ids, self._audio = None, None
        self._watch_signal(output.get("advantages"))
        return output

    def _watch_signal(self, advantages) -> None:
        """Warn when NO_SIGNAL_WARN_AFTER generation batches in a row have every advantage 0 (no gradient)."""
        if advantages is None or not self.model.training:
            return
        silent = bool((advantages.abs() < 1e-12).all())
        self._silent_batches = self._silent_batches + 1 if silent else 0
        if self._silent_batches == NO_SIGNAL_WARN_AFTER:
            logger.warning(
                "the last %d generation batches had zero advantage for every completion: every group's rewards "
                "tie, so the policy gets no gradient. Check that the rewards apply to these rows (None is no "
                "reward), that the model can produce the answer format, or raise temperature / num_generations",
                NO_SIGNAL_WARN_AFTER,
            )

    def _check_lengths(self, prompt_ids, inputs) -> None:
        worst = max(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        check_positions(
            self.model,
            len(prompt_ids[worst]) + self.max_completion_length,
            f"row {inputs[worst].get('id')!r}: prompt of {len(prompt_ids[worst])} tokens plus "
            f"max_completion_length {self.max_completion_length}",
        )

    def _tokenize_prompts(self, prompts: list):
        if self._prompt_ids is None:
            raise RuntimeError("AudioGRPOTrainer: prompts must go through _generate_and_score_completions")
        return self._prompt_ids, None, self.builder.adapter.model_audio_kwargs(self._audio, self._model_dtype())

    # ---- log-probs -----------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        self._audio = AudioBatch.from_dict(inputs)
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._audio = None

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **unused,
    ):
        audio = self._audio
        if audio is None or len(audio) != input_ids.size(0):
            raise RuntimeError("AudioGRPOTrainer: audio for this batch is missing or misaligned")
        batch_size = batch_size or input_ids.size(0)
        dtype = self._model_dtype()
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids = input_ids[start:end]  # (b, T)
            audio_kwargs = self.builder.adapter.model_audio_kwargs(audio[start:end], dtype)
            # only the K + 1 positions that predict the completion reach the LM head, as TRL's own pass asks
            with self.accelerator.autocast(), last_logits_only(model, logits_to_keep + 1):
                logits = model(
                    input_ids=ids, attention_mask=attention_mask[start:end], use_cache=False, **audio_kwargs
                ).logits  # (b, K + 1, V)
            logits = logits[:, -logits_to_keep - 1 : -1, :] / self.temperature  # (b, K, V): predicts completion
            logps.append(selective_log_softmax(logits, ids[:, -logits_to_keep:]))
            if compute_entropy:
                with torch.no_grad():
                    entropies.append(entropy_from_logits(logits))
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    # ---- rewards -------------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (N_all, F)
        if self.fusion is None:
            return rewards
        tasks = None
        if self.fusion.per_task:
            # the rows' tasks, gathered in the same process order as the rewards (a group can span processes)
            tasks = trl_grpo.gather_object([x["task"] for x in inputs])
        return self._apply_fusion(rewards, tasks)

    def _apply_fusion(self, rewards: torch.Tensor, tasks: list[str] | None = None) -> torch.Tensor:
        """`RewardFusion.apply` on the gathered (N_all, F) rewards, its metrics logged with TRL's."""
        out = self.fusion.apply(rewards, self.num_generations, tasks)
        mode = "train" if self.model.training else "eval"
        for key, value in out.metrics.items():
            self._metrics[mode][key].append(value)
        return out.rewards

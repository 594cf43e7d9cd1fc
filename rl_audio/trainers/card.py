"""The model card our trainers write with every checkpoint, in place of TRL's generic one, and its section on loading
the outputs with stock transformers and PEFT (what works without rl_audio, and what does not)."""

from __future__ import annotations

# family -> the transformers class every saved config.json names (`families.record_stock_architecture`)
STOCK_CLASSES = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
    "qwen2_5_omni": "Qwen2_5OmniThinkerForConditionalGeneration",
    "audio_flamingo3": "AudioFlamingo3ForConditionalGeneration",
}


def _prompt_lines(family: str, mode: str, stride: float | None) -> list[str]:
    lines = [
        "Prompts must follow the training layout recorded in `rl_audio.json` (audio placeholders, timestamps, answer",
        "style). `rl_audio.models.prompting.PromptBuilder` builds exactly that layout; the stock processors know",
    ]
    if mode == "none":
        return [*lines, "nothing of rl_audio's layout and are not checked against it.", ""]
    what = "text timestamps" if mode == "text" else "timestamp tokens"
    lines += [f"nothing of the {what} placed between the audio placeholders, so they cannot build these prompts."]
    if mode == "tokens" and family == "qwen2_audio":
        lines += [
            f"With a timestamp token after every {stride:g} s of audio, no two `<|AUDIO|>` placeholders may be",
            "adjacent, and the stock `Qwen2AudioForConditionalGeneration.forward` then takes transformers' legacy",
            "merge path and raises; `rl_audio.models.families.Qwen2AudioTimestampModel` (a subclass with the same",
            "weights, which loads this folder) merges by position, or pass `inputs_embeds` yourself.",
        ]
    return [*lines, ""]


def stock_loading_section(family: str, mode: str, lora: bool, base: str, stride: float | None = None) -> list[str]:
    """Markdown lines: how to load this output with stock transformers / PEFT, and what still needs rl_audio."""
    cls = STOCK_CLASSES.get(family, "the base model's class")
    lines = ["## Load with stock transformers and PEFT", "", "```python",
             f"from transformers import AutoTokenizer, {cls}", "",
             f'model = {cls}.from_pretrained("final")  # config.json names this class',
             'tokenizer = AutoTokenizer.from_pretrained("final")']  # fmt: skip
    if lora:
        lines += ["", "from peft import PeftModel", "",
                  f'base = {cls}.from_pretrained("{base}")',
                  "if len(tokenizer) > base.get_input_embeddings().num_embeddings:  # timestamp tokens added rows",
                  "    base.resize_token_embeddings(len(tokenizer))",
                  'model = PeftModel.from_pretrained(base, "final/adapter")  # or a checkpoint-N folder']  # fmt: skip
    lines += ["```", ""]
    if lora and mode == "tokens":
        lines += [
            "The adapter carries the whole embedding and lm_head tables, timestamp rows included: resize the base",
            "first as above (when the tokenizer has more tokens than the base has rows), or loading stops on a",
            "size mismatch. Without the tables the base would keep rows that rl_audio never trained around.",
            "",
        ]
    return [*lines, *_prompt_lines(family, mode, stride)]


class ModelCardMixin:
    """For a TRL trainer subclass: ``create_model_card`` writes :func:`rl_audio.runs.model_card` (base model, recipe,
    timestamps, rewards, papers, and :func:`stock_loading_section`) to ``output_dir/README.md``. Set
    ``card_stage`` ("sft", "grpo")."""

    card_stage = "checkpoint"

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        from ..runs import write_checkpoint_card

        write_checkpoint_card(self, self.card_stage)

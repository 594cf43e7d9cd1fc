"""The contract between rl_audio's trainers and the private TRL / transformers methods they override.

`AudioGRPOTrainer` and `AudioSFTTrainer` (with `ExactResumeMixin` and `ModelCardMixin`) override private methods
and swap `trl.trainer.grpo_trainer.create_model_from_path` while TRL's constructor runs. Nothing in TRL promises
these names, parameters or call sites, so a TRL upgrade could rename one or stop calling it and training would go
on silently without audio, without fusion or without the reference model's loader. This file pins, against the
installed TRL (pyproject.toml pins the 1.16 series, the one verified here):

- every override is in the table below (a new override without a pin fails);
- the upstream method's parameter names, in order, and that our override accepts each of them;
- the call pattern our override relies on, read from the upstream source with `ast`: who calls the method, with
  which positional count and keyword names, and how the result is unpacked.

Each failure names the method and what changed. Fast: no model, no training.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap

import pytest
import torch
import transformers
import trl
import trl.trainer.grpo_trainer as trl_grpo
from transformers import Trainer
from trl import GRPOTrainer, SFTTrainer
from trl.trainer import utils as trl_utils

from rl_audio.trainers import grpo as ours_grpo
from rl_audio.trainers.grpo import AudioGRPOTrainer
from rl_audio.trainers.sft import AudioSFTTrainer

VERIFIED = (
    f"verified against TRL 1.16.0 / transformers 5.25; installed: TRL {trl.__version__}, "
    f"transformers {transformers.__version__}"
)

# (our class, method) -> (upstream class, upstream parameter names in order). `None` for our constructors, whose
# parameters are ours (checked separately: they forward everything else to TRL by name).
LOGPS_PARAMS = [
    "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
    "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
    "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
]  # fmt: skip
RUN_EPOCH_PARAMS = [
    "self", "model", "epoch", "train_dataloader", "steps_in_epoch", "num_update_steps_per_epoch", "trial",
    "ignore_keys_for_eval", "start_time", "resume_from_checkpoint", "epochs_trained",
    "steps_trained_in_current_epoch",
]  # fmt: skip
GRPO_INIT_PARAMS = [
    "self", "model", "reward_funcs", "args", "train_dataset", "eval_dataset", "processing_class",
    "reward_processing_classes", "callbacks", "optimizers", "quantization_config", "peft_config", "tools",
    "rollout_func", "environment_factory",
]  # fmt: skip
CARD_PARAMS = ["self", "model_name", "dataset_name", "tags"]
CHECKPOINT_PARAMS = ["self", "resume_from_checkpoint", "model"]
OVERRIDES = {
    (AudioGRPOTrainer, "__init__"): (GRPOTrainer, GRPO_INIT_PARAMS),
    (AudioGRPOTrainer, "_generate_and_score_completions"): (GRPOTrainer, ["self", "inputs"]),
    (AudioGRPOTrainer, "_tokenize_prompts"): (GRPOTrainer, ["self", "prompts"]),
    (AudioGRPOTrainer, "_compute_loss"): (GRPOTrainer, ["self", "model", "inputs"]),
    (AudioGRPOTrainer, "_get_per_token_logps_and_entropies"): (GRPOTrainer, LOGPS_PARAMS),
    (AudioGRPOTrainer, "_calculate_rewards"): (
        GRPOTrainer,
        ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    ),
    (AudioGRPOTrainer, "_load_from_checkpoint"): (Trainer, CHECKPOINT_PARAMS),
    (AudioGRPOTrainer, "_run_epoch"): (Trainer, RUN_EPOCH_PARAMS),
    (AudioGRPOTrainer, "create_model_card"): (GRPOTrainer, CARD_PARAMS),
    (AudioSFTTrainer, "compute_loss"): (
        SFTTrainer,
        ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
    ),
    (AudioSFTTrainer, "_load_from_checkpoint"): (Trainer, CHECKPOINT_PARAMS),
    (AudioSFTTrainer, "_run_epoch"): (Trainer, RUN_EPOCH_PARAMS),
    (AudioSFTTrainer, "create_model_card"): (SFTTrainer, CARD_PARAMS),
}
OVERRIDE_IDS = [f"{cls.__name__}.{name}" for cls, name in OVERRIDES]


# ---- helpers -----------------------------------------------------------------------------------------------------
def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _upstream(cls: type) -> list[type]:
    """The classes of `cls`'s MRO that are not rl_audio's (TRL's, transformers', object)."""
    return [k for k in cls.__mro__ if not k.__module__.startswith("rl_audio")]


def _overrides_of(cls: type) -> set[str]:
    """Methods defined by rl_audio classes in `cls`'s MRO that also exist on an upstream class: the overrides."""
    upstream = _upstream(cls)
    found = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("rl_audio"):
            continue
        for name, value in vars(klass).items():
            if callable(value) and any(name in vars(u) for u in upstream if u is not object):
                found.add(name)
    return found


@functools.cache
def _tree(fn) -> ast.AST:
    """The parsed source of a function (dedented: methods are indented in their class), parsed once so that nodes
    found by different helpers compare by identity."""
    return ast.parse(textwrap.dedent(inspect.getsource(fn)))


def _self_calls(fn, name: str) -> list[ast.Call]:
    """Calls `self.<name>(...)` in `fn`'s source."""
    return [
        node
        for node in ast.walk(_tree(fn))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
    ]


def _bare_calls(fn, name: str) -> list[ast.Call]:
    """Calls `<name>(...)` by its bare, module-global name in `fn`'s source."""
    return [
        node
        for node in ast.walk(_tree(fn))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def _unpacked_into(fn, name: str) -> list[int | None]:
    """For each `... = self.<name>(...)` in `fn`: how many targets the result is unpacked into (None: not a tuple)."""
    counts = []
    for node in ast.walk(_tree(fn)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value in _self_calls(fn, name):
            target = node.targets[0]
            counts.append(len(target.elts) if isinstance(target, ast.Tuple) else None)
    return counts


def _ours(cls: type, name: str):
    """Our own definition of `name` (the first rl_audio class in the MRO that defines it)."""
    return next(vars(k)[name] for k in cls.__mro__ if k.__module__.startswith("rl_audio") and name in vars(k))


def _where(fn) -> str:
    return f"{fn.__qualname__} ({inspect.getsourcefile(fn)})"


def _keywords(call: ast.Call) -> set[str]:
    return {k.arg for k in call.keywords if k.arg is not None}


def _self_attributes_assigned(fn) -> set[str]:
    """Attribute names `self.<x> = ...` assigned in `fn`'s source."""
    names = set()
    for node in ast.walk(_tree(fn)):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                names.add(t.attr)
    return names


def _accepts(ours, theirs) -> list[str]:
    """What a call that fits `theirs` could pass and `ours` would refuse: a parameter that is at another position
    among our positional ones, a name `ours` neither has nor absorbs with **kwargs, or a parameter of ours without a
    default. TRL's parameters past our positional ones must be accepted by keyword (the call-pattern tests check
    that TRL passes them by keyword)."""
    kinds = inspect.Parameter
    mine, their = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    var_pos = any(p.kind is kinds.VAR_POSITIONAL for p in mine.values())
    var_kw = any(p.kind is kinds.VAR_KEYWORD for p in mine.values())
    my_positional = [n for n, p in mine.items() if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    problems = []
    for i, (name, p) in enumerate(their.items()):
        if p.kind in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD):
            continue
        if (
            p.kind is kinds.POSITIONAL_OR_KEYWORD
            and not var_pos
            and i < len(my_positional)
            and my_positional[i] != name
        ):
            problems.append(f"positional parameter {i} {name!r} is {my_positional[i]!r} in ours")
        elif name not in mine and not var_kw:
            problems.append(f"parameter {name!r} is neither a parameter of ours nor absorbed by **kwargs")
    required = [kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY]
    for name, p in mine.items():
        if name not in their and p.default is kinds.empty and p.kind in required:
            problems.append(f"our parameter {name!r} has no default, and TRL's callers never pass it")
    return problems


# ---- every override is pinned --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [AudioGRPOTrainer, AudioSFTTrainer], ids=lambda c: c.__name__)
def test_every_override_is_pinned(cls):
    pinned = {name for klass, name in OVERRIDES if klass is cls}
    found = _overrides_of(cls)
    assert found == pinned, (
        f"{cls.__name__} overrides {sorted(found - pinned)} that this contract does not pin, and the contract pins "
        f"{sorted(pinned - found)} that are no longer overridden: update OVERRIDES (and docs/grpo.md)"
    )


@pytest.mark.parametrize(("key", "expected"), list(OVERRIDES.items()), ids=OVERRIDE_IDS)
def test_upstream_signature_is_pinned(key, expected):
    cls, name = key
    upstream, params = expected
    fn = getattr(upstream, name, None)
    assert fn is not None, f"{upstream.__name__}.{name} no longer exists ({VERIFIED}): {cls.__name__} overrides it"
    assert _params(fn) == params, (
        f"{_where(fn)} parameters changed from {params} to {_params(fn)} ({VERIFIED}): check "
        f"{cls.__name__}.{name} against the new signature, then update the pin"
    )


@pytest.mark.parametrize("key", [k for k in OVERRIDES if k[1] != "__init__"], ids=lambda k: f"{k[0].__name__}.{k[1]}")
def test_our_override_accepts_upstream_parameters(key):
    cls, name = key
    upstream = OVERRIDES[key][0]
    problems = _accepts(_ours(cls, name), getattr(upstream, name))
    assert not problems, f"{cls.__name__}.{name} does not accept what {upstream.__name__}.{name} does: {problems}"


def test_grpo_constructor_forwards_trl_parameters_by_name():
    """Our __init__ adds keyword-only parameters and passes *args/**kwargs on; it reads `kwargs["args"]`, so TRL's
    config parameter must still be called `args`."""
    sig = inspect.signature(AudioGRPOTrainer.__init__).parameters
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values())
    assert "args" in _params(GRPOTrainer.__init__), f"GRPOTrainer.__init__ has no `args` parameter ({VERIFIED})"


def test_accepts_helper_reports_mismatches():
    """Guards the helpers: a signature that moves a positional parameter, or drops **kwargs, is reported."""

    def theirs(self, model, inputs, extra=None):
        pass

    def moved(self, inputs, model, extra=None):
        pass

    def narrow(self, model, inputs):
        pass

    def required(self, model, inputs, extra=None, *, audio):
        pass

    def absorbing(self, model, **unused):
        pass

    assert _accepts(theirs, theirs) == [] and _accepts(absorbing, theirs) == []
    assert any("positional parameter 1" in p for p in _accepts(moved, theirs))
    assert any("'extra'" in p for p in _accepts(narrow, theirs))
    assert any("'audio' has no default" in p for p in _accepts(required, theirs))


# ---- GRPO: prompts and audio reach generation ----------------------------------------------------------------------
def test_generation_goes_through_tokenize_prompts():
    """Our `_tokenize_prompts` hands TRL the prompt ids and audio tensors: TRL must call it from `_generate`
    (itself called by `_generate_and_score_completions`), unpack three values and pass the third to generation."""
    calls = _self_calls(GRPOTrainer._generate_and_score_completions, "_generate")
    assert calls, f"{_where(GRPOTrainer._generate_and_score_completions)} no longer calls self._generate(...)"
    assert _unpacked_into(GRPOTrainer._generate, "_tokenize_prompts") == [3], (
        f"{_where(GRPOTrainer._generate)} no longer calls `a, b, c = self._tokenize_prompts(prompts)` once: "
        "AudioGRPOTrainer._tokenize_prompts returns (prompt_ids, images, multimodal_fields)"
    )
    single = _self_calls(GRPOTrainer._generate, "_generate_single_turn")
    assert single and any(isinstance(a, ast.Name) and a.id == "multimodal_fields" for a in single[0].args), (
        f"{_where(GRPOTrainer._generate)} no longer passes multimodal_fields to _generate_single_turn: the audio "
        "tensors would not reach generation"
    )
    source = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "multimodal_fields.items()" in source and ".generate(" in source, (
        f"{_where(GRPOTrainer._generate_single_turn)} no longer forwards multimodal_fields to generate()"
    )


def test_tokenize_prompts_returns_three_values():
    for node in ast.walk(_tree(GRPOTrainer._tokenize_prompts)):
        if isinstance(node, ast.Return):
            assert isinstance(node.value, ast.Tuple) and len(node.value.elts) == 3, (
                f"{_where(GRPOTrainer._tokenize_prompts)} returns something other than (prompt_ids, images, "
                f"multimodal_fields) at line {node.lineno}: our override returns that triple"
            )


def test_generation_batch_carries_our_audio_tensors():
    """We add per-sample audio tensors to the dict `_generate_and_score_completions` returns; TRL's
    `_prepare_inputs` must shuffle and split that dict (every key, row-aligned) before `_compute_loss` sees it."""
    fn = GRPOTrainer._prepare_inputs
    assert _self_calls(fn, "_generate_and_score_completions"), f"{_where(fn)} no longer generates the batch"
    for helper in ("shuffle_sequence_dict", "split_tensor_dict"):
        assert _bare_calls(fn, helper), f"{_where(fn)} no longer calls {helper}: check that audio keys survive"
    ids = torch.arange(6).view(6, 1)
    batch = {"prompt_ids": ids, "input_features": ids.float().repeat(1, 3)}  # a key TRL does not know
    for part in trl_grpo.split_tensor_dict(trl_grpo.shuffle_sequence_dict(batch), 3):
        assert set(part) == set(batch), "split_tensor_dict dropped a key TRL does not know"
        assert torch.equal(part["input_features"][:, 0].long(), part["prompt_ids"][:, 0]), (
            "shuffle_sequence_dict/split_tensor_dict no longer keep unknown tensors row-aligned with the prompts"
        )
    assert '"advantages"' in inspect.getsource(GRPOTrainer._generate_and_score_completions), (
        "TRL's _generate_and_score_completions no longer returns `advantages` (our no-signal warning reads it)"
    )


# ---- GRPO: log-probs ---------------------------------------------------------------------------------------------
def test_compute_loss_goes_through_our_compute_loss():
    """Our `_compute_loss` puts the batch's audio in place for the log-prob pass; TRL's `compute_loss` must call it."""
    calls = _self_calls(GRPOTrainer.compute_loss, "_compute_loss")
    assert calls and [ast.unparse(a) for a in calls[0].args] == ["model", "inputs"], (
        f"{_where(GRPOTrainer.compute_loss)} no longer calls self._compute_loss(model, inputs)"
    )


# Where TRL computes log-probs and the keywords our override reads (it absorbs TRL's image keywords with **unused).
LOGPS_CALLERS = {
    "_compute_loss": {"compute_entropy", "compute_aux_loss"},
    "_generate_and_score_completions": {"batch_size"},
}


@pytest.mark.parametrize("caller", list(LOGPS_CALLERS))
def test_logps_pass_is_called_as_our_override_expects(caller):
    fn = getattr(GRPOTrainer, caller)
    calls = _self_calls(fn, "_get_per_token_logps_and_entropies")
    assert calls, f"{_where(fn)} no longer calls self._get_per_token_logps_and_entropies: audio would miss a pass"
    accepted = set(_params(_ours(AudioGRPOTrainer, "_get_per_token_logps_and_entropies")))
    for call in calls:
        where = f"{_where(fn)} line {call.lineno}"
        positional = [ast.unparse(a) for a in call.args]
        assert len(positional) == 4, (
            f"{where}: positional arguments changed to {positional}; ours are (model, input_ids, attention_mask, "
            "logits_to_keep)"
        )
        missing = LOGPS_CALLERS[caller] - _keywords(call)
        assert not missing, f"{where} no longer passes {sorted(missing)} by keyword (our override names them)"
        unknown = _keywords(call) - set(LOGPS_PARAMS)
        assert not unknown, f"{where} passes new keywords {sorted(unknown)}: check whether they carry model inputs"
        assert LOGPS_CALLERS[caller] <= accepted, f"our override no longer names {LOGPS_CALLERS[caller] - accepted}"
    assert set(_unpacked_into(fn, "_get_per_token_logps_and_entropies")) == {3}, (
        f"{_where(fn)} no longer unpacks (logps, entropies, aux_loss) from the log-prob pass"
    )


def test_logps_helpers_keep_their_signatures():
    """Our log-prob pass uses TRL's selective_log_softmax and entropy_from_logits."""
    assert _params(trl_utils.selective_log_softmax)[:2] == ["logits", "index"], VERIFIED
    assert _params(trl_utils.entropy_from_logits)[:1] == ["logits"], VERIFIED
    assert ours_grpo.selective_log_softmax is trl_utils.selective_log_softmax


# ---- GRPO: rewards -----------------------------------------------------------------------------------------------
def test_rewards_are_gathered_before_our_fusion():
    """Our `_calculate_rewards` fuses per group on TRL's result, which must be the rewards of all processes."""
    fn = GRPOTrainer._generate_and_score_completions
    calls = _self_calls(fn, "_calculate_rewards")
    assert len(calls) == 1, f"{_where(fn)} calls self._calculate_rewards {len(calls)} times, not once"
    args = [ast.unparse(a) for a in calls[0].args]
    assert args == ["inputs", "prompts", "completions", "completion_ids_list"], (
        f"{_where(fn)} calls self._calculate_rewards({', '.join(args)})"
    )
    body = _tree(GRPOTrainer._calculate_rewards).body[0].body
    last, before = body[-1], body[-2]
    assert isinstance(last, ast.Return) and ast.unparse(before) == "rewards_per_func = gather(rewards_per_func)", (
        f"{_where(GRPOTrainer._calculate_rewards)} no longer ends by gathering the rewards of all processes: "
        "the variance-gated fusion of a group that spans processes would see only part of it"
    )
    assert callable(getattr(trl_grpo, "gather_object", None)), "trl.trainer.grpo_trainer.gather_object is gone"


# ---- GRPO: the reference model's loader -----------------------------------------------------------------------------
def test_reference_model_is_built_by_the_swapped_module_global():
    """We swap `trl.trainer.grpo_trainer.create_model_from_path` while `GRPOTrainer.__init__` runs: TRL must call it
    by its module-global name there, and build `self.ref_model` with it."""
    assert callable(getattr(trl_grpo, "create_model_from_path", None)), (
        f"trl.trainer.grpo_trainer has no create_model_from_path ({VERIFIED}): rl_audio's reference-model loader "
        "(rl_audio/trainers/grpo.py, _reference_model_from) would not be used"
    )
    calls = _bare_calls(GRPOTrainer.__init__, "create_model_from_path")
    assert calls, f"{_where(GRPOTrainer.__init__)} no longer calls create_model_from_path by its bare name"
    ref = [
        node
        for node in ast.walk(_tree(GRPOTrainer.__init__))
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "self.ref_model" and node.value in calls
    ]
    assert ref, f"{_where(GRPOTrainer.__init__)} no longer builds self.ref_model with create_model_from_path"
    original = trl_grpo.create_model_from_path
    with ours_grpo._reference_model_from(lambda: "ours"):
        assert trl_grpo.create_model_from_path("any/path", dtype=None) == "ours"
    assert trl_grpo.create_model_from_path is original


def test_attributes_our_overrides_read_are_set_by_trl():
    needed = {"reward_func_names", "num_generations", "temperature", "max_completion_length", "_metrics", "ref_model"}
    missing = needed - _self_attributes_assigned(GRPOTrainer.__init__)
    assert not missing, f"{_where(GRPOTrainer.__init__)} no longer sets {sorted(missing)}, which our overrides read"
    assert "_metrics" in _self_attributes_assigned(SFTTrainer.__init__), "SFTTrainer no longer sets self._metrics"


# ---- SFT and the mixins ------------------------------------------------------------------------------------------
def test_sft_loss_is_called_with_num_items_in_batch():
    calls = _self_calls(Trainer.training_step, "compute_loss")
    assert calls and all("num_items_in_batch" in _keywords(c) for c in calls), (
        f"{_where(Trainer.training_step)} no longer calls self.compute_loss(..., num_items_in_batch=...): "
        "AudioSFTTrainer.compute_loss normalises the loss over the accumulated batch with it"
    )


def test_resume_and_card_hooks_are_called():
    assert _self_calls(Trainer._inner_training_loop, "_run_epoch"), (
        "Trainer._inner_training_loop no longer calls _run_epoch"
    )
    assert "should_training_stop" in inspect.getsource(Trainer._inner_training_loop), (
        "Trainer._inner_training_loop no longer checks control.should_training_stop after an epoch "
        "(ExactResumeMixin._run_epoch stops a run resumed at max_steps with it)"
    )
    callers = [f for f in (Trainer.train, Trainer._prepare_for_training) if _self_calls(f, "_load_from_checkpoint")]
    assert callers, "transformers' Trainer no longer calls self._load_from_checkpoint from train/_prepare_for_training"
    for cls in (GRPOTrainer, SFTTrainer):
        calls = _self_calls(cls._save_checkpoint, "create_model_card")
        assert calls and all(_keywords(c) <= set(CARD_PARAMS) for c in calls), (
            f"{_where(cls._save_checkpoint)} no longer calls self.create_model_card(model_name=...): "
            "ModelCardMixin's card would not be written"
        )

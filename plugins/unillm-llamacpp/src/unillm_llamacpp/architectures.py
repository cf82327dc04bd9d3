"""How each supported Hugging Face architecture maps onto llama.cpp's.

Names and layouts follow llama.cpp's own convert_hf_to_gguf.py; tensor names come from the
`gguf` package's TensorNameMap (the same table llama.cpp's converter uses). What differs per
architecture, and is spelled out here:

- llama: llama.cpp applies rotary embeddings to interleaved pairs (GPT-J style) while
  transformers' Llama rotates the two halves of each head, so q and k rows are permuted
  (`permute`); k with the key/value head count (grouped-query attention).
- qwen2: llama.cpp runs it with NeoX-style (half-split) rotary embeddings, the same layout as
  transformers, so nothing is permuted; q/k/v carry biases.
- gpt2: transformers stores its linear layers as Conv1D ([in, out]), so they are transposed;
  positions are a learned table; the output layer is the (tied) token embedding, written
  out again as `output.weight`.

Configurations whose numerics llama.cpp would not reproduce (rope scaling, other activations,
GPT-2's attention variants) are refused with the setting's name, not converted approximately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import TensorRef

Transform = Callable[[np.ndarray], np.ndarray]


class UnsupportedModelError(ValueError):
    """The checkpoint's architecture or one of its settings cannot be converted exactly."""


@dataclass(frozen=True)
class Planned:
    """One tensor to write: its GGUF name, where it comes from, and how it is changed."""

    name: str
    source: TensorRef
    shape: tuple[int, ...]  # numpy shape after `transform`
    transform: Transform | None = None


def permute(n_head: int) -> Transform:
    """Rows of each head from [first half; second half] to interleaved pairs."""

    def apply(w: np.ndarray) -> np.ndarray:
        return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
                .swapaxes(1, 2).reshape(w.shape))

    return apply


def transpose(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


def _rope_theta(config: dict[str, Any]) -> float:
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise UnsupportedModelError(f"rope scaling {kind!r} is not supported by this converter")
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _require(config: dict[str, Any], key: str, allowed: tuple[Any, ...], default: Any = None) -> None:
    value = config.get(key, default)
    if value not in allowed:
        raise UnsupportedModelError(
            f"config.json {key} = {value!r}: llama.cpp runs this architecture with "
            f"{' or '.join(repr(a) for a in allowed)} only"
        )


class Architecture:
    """Base: the GGUF architecture name and the two things each one defines."""

    gguf_arch: str = ""

    def write_hparams(self, writer: Any, config: dict[str, Any]) -> None:
        raise NotImplementedError

    def plan(self, tensors: dict[str, TensorRef], config: dict[str, Any]) -> list[Planned]:
        raise NotImplementedError

    def _name_map(self, config: dict[str, Any]):
        import gguf

        arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == self.gguf_arch)
        return gguf.get_tensor_name_map(arch, self.block_count(config))

    def block_count(self, config: dict[str, Any]) -> int:
        return int(config["num_hidden_layers"])

    def _mapped(self, name: str, names) -> str:
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise UnsupportedModelError(f"tensor {name!r} has no llama.cpp counterpart "
                                        f"for architecture {self.gguf_arch!r}")
        return new


class Llama(Architecture):
    gguf_arch = "llama"
    rotate_halves = True  # transformers' rotary layout differs from llama.cpp's for this arch

    def _dims(self, config: dict[str, Any]) -> tuple[int, int, int]:
        n_head = int(config["num_attention_heads"])
        n_kv = int(config.get("num_key_value_heads") or n_head)
        head_dim = int(config.get("head_dim") or config["hidden_size"] // n_head)
        return n_head, n_kv, head_dim

    def write_hparams(self, writer: Any, config: dict[str, Any]) -> None:
        _require(config, "hidden_act", ("silu",), "silu")
        if config.get("mlp_bias"):
            raise UnsupportedModelError("config.json mlp_bias = true is not supported")
        n_head, n_kv, head_dim = self._dims(config)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_block_count(self.block_count(config))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_freq_base(_rope_theta(config))
        writer.add_rope_dimension_count(head_dim)
        writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
        writer.add_vocab_size(int(config["vocab_size"]))
        if head_dim != int(config["hidden_size"]) // n_head:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)

    def plan(self, tensors: dict[str, TensorRef], config: dict[str, Any]) -> list[Planned]:
        names = self._name_map(config)
        n_head, n_kv, _ = self._dims(config)
        tied = bool(config.get("tie_word_embeddings", False))
        out = []
        for name, ref in tensors.items():
            if name.endswith("rotary_emb.inv_freq"):
                continue
            if tied and name == "lm_head.weight":
                continue  # tied: llama.cpp reuses token_embd when output.weight is absent
            transform = None
            if self.rotate_halves and ".q_proj." in name:
                transform = permute(n_head)
            elif self.rotate_halves and ".k_proj." in name:
                transform = permute(n_kv)
            out.append(Planned(self._mapped(name, names), ref, ref.shape, transform))
        return out


class Qwen2(Llama):
    gguf_arch = "qwen2"
    rotate_halves = False  # llama.cpp runs qwen2 with NeoX rotary: transformers' layout

    def write_hparams(self, writer: Any, config: dict[str, Any]) -> None:
        if config.get("use_sliding_window"):
            raise UnsupportedModelError("config.json use_sliding_window = true is not supported")
        super().write_hparams(writer, config)


class GPT2(Architecture):
    gguf_arch = "gpt2"

    def block_count(self, config: dict[str, Any]) -> int:
        return int(config["n_layer"])

    def write_hparams(self, writer: Any, config: dict[str, Any]) -> None:
        _require(config, "activation_function", ("gelu_new", "gelu_pytorch_tanh"), "gelu_new")
        _require(config, "scale_attn_weights", (True,), True)
        _require(config, "scale_attn_by_inverse_layer_idx", (False,), False)
        _require(config, "reorder_and_upcast_attn", (False,), False)
        n_embd = int(config["n_embd"])
        writer.add_context_length(int(config["n_positions"]))
        writer.add_embedding_length(n_embd)
        writer.add_block_count(self.block_count(config))
        writer.add_feed_forward_length(int(config.get("n_inner") or 4 * n_embd))
        writer.add_head_count(int(config["n_head"]))
        writer.add_layer_norm_eps(float(config["layer_norm_epsilon"]))
        writer.add_vocab_size(int(config["vocab_size"]))

    def plan(self, tensors: dict[str, TensorRef], config: dict[str, Any]) -> list[Planned]:
        names = self._name_map(config)
        out = []
        for name, ref in tensors.items():
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # causal-mask buffers, not weights
            if name == "lm_head.weight":
                continue  # GPT-2's head is always the token embedding (added below)
            transform: Transform | None = None
            shape = ref.shape
            if name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
                transform, shape = transpose, shape[::-1]
            new = self._mapped(name, names)
            out.append(Planned(new, ref, shape, transform))
            if new == "token_embd.weight":
                out.append(Planned("output.weight", ref, shape, None))
        return out


ARCHITECTURES: dict[str, Architecture] = {
    "LlamaForCausalLM": Llama(),
    "Qwen2ForCausalLM": Qwen2(),
    "GPT2LMHeadModel": GPT2(),
}


def architecture_for(config: dict[str, Any]) -> Architecture:
    for name in config.get("architectures") or ():
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise UnsupportedModelError(
        f"architecture {config.get('architectures')} is not supported by unillm-llamacpp's "
        f"converter; supported: {', '.join(ARCHITECTURES)}. Convert it with llama.cpp's "
        "convert_hf_to_gguf.py and load the .gguf file instead."
    )

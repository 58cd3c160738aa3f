r"""A small causal (decoder-only) transformer in Keras: token ids in, next-token logits out.

.. math:: h^{(0)}_t = E[x_t] + P[t], \quad
          h^{(l)} = h' + \mathrm{FFN}(\mathrm{LN}(h')), \;
          h' = h^{(l-1)} + \mathrm{MHA}_\text{causal}(\mathrm{LN}(h^{(l-1)})), \quad
          z_t = W\, \mathrm{LN}(h^{(L)}_t) + b,

pre-layer-norm blocks with learned token and position embeddings; position t attends to
positions 0..t only (``use_causal_mask=True``), so ``z_t`` depends on ``x_0 .. x_t`` alone and
the logits at every position come from one call. Backend-agnostic (``keras.ops``).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from kdlib import validate

__all__ = ["TokenAndPositionEmbedding", "causal_transformer"]


@keras.saving.register_keras_serializable(package="kdlib")
class TokenAndPositionEmbedding(layers.Layer):
    """``E[x_t] + P[t]``: a learned embedding of each token plus one of its position."""

    def __init__(self, vocab_size: int, max_length: int, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = validate.positive_int(vocab_size, "vocab_size", 32)
        self.max_length = validate.positive_int(max_length, "max_length", 12)
        self.dim = validate.positive_int(dim, "dim", 32)
        self.tokens = layers.Embedding(self.vocab_size, self.dim, name="tokens")
        self.positions = layers.Embedding(self.max_length, self.dim, name="positions")

    def build(self, input_shape: Any) -> None:
        self.tokens.build(input_shape)
        self.positions.build((self.max_length,))
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        length = ops.shape(inputs)[-1]
        return self.tokens(inputs) + self.positions(ops.arange(length))[None, :, :]

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*tuple(input_shape), self.dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, max_length=self.max_length, dim=self.dim)
        return config


def causal_transformer(
    vocab_size: int,
    max_length: int,
    dim: int = 32,
    num_heads: int = 2,
    num_layers: int = 2,
    ff_dim: int | None = None,
    seed: int | None = None,
    name: str = "causal_transformer",
) -> keras.Model:
    """Build a decoder-only transformer: ``(batch, time)`` token ids -> ``(batch, time, vocab)``.

    Parameters
    ----------
    vocab_size : int
        Number of token ids (the output logits).
    max_length : int
        The longest input (``time``) the position embedding covers.
    dim, num_heads, num_layers : int
        Width of the residual stream (divisible by ``num_heads``), heads, blocks.
    ff_dim : int, optional
        Hidden width of each feed-forward layer; ``4 * dim`` when None.
    seed : int, optional
        Seeds the initial weights (the same seed gives the same model).
    """
    dim = validate.positive_int(dim, "dim", 32)
    num_heads = validate.positive_int(num_heads, "num_heads", 2)
    num_layers = validate.positive_int(num_layers, "num_layers", 2)
    ff_dim = 4 * dim if ff_dim is None else validate.positive_int(ff_dim, "ff_dim", 64)
    if dim % num_heads:
        raise ValueError(
            f"dim must be divisible by num_heads, got dim={dim}, num_heads={num_heads}; "
            f"e.g. dim={num_heads * max(1, dim // num_heads)}."
        )
    if seed is not None:
        keras.utils.set_random_seed(validate.seed(seed))
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    h = TokenAndPositionEmbedding(vocab_size, max_length, dim, name="embedding")(tokens)
    for i in range(num_layers):
        a = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln1")(h)
        a = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=dim // num_heads, name=f"block{i}_attention"
        )(a, a, use_causal_mask=True)
        h = layers.Add(name=f"block{i}_add1")([h, a])
        f = layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln2")(h)
        f = layers.Dense(ff_dim, activation="gelu", name=f"block{i}_ff1")(f)
        f = layers.Dense(dim, name=f"block{i}_ff2")(f)
        h = layers.Add(name=f"block{i}_add2")([h, f])
    h = layers.LayerNormalization(epsilon=1e-5, name="final_ln")(h)
    logits = layers.Dense(vocab_size, name="logits")(h)
    return keras.Model(tokens, logits, name=name)

"""Independent NumPy transcriptions of DESIGN sections 3 and 4, for tests.

Written from the equations, not from the modules: every row of the RMC is computed in
every block (the module skips the input row's queries in the last block), and the gate
of the gated slot memory is one matrix over [A_i ; u]. Parameters come in as the
module's ``state_dict`` converted to float64 arrays.
"""

from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]


def params_of(module) -> Params:
    return {name: value.detach().double().numpy() for name, value in module.state_dict().items()}


def linear(params: Params, name: str, x: np.ndarray) -> np.ndarray:
    out = x @ params[f"{name}.weight"].T
    bias = params.get(f"{name}.bias")
    return out if bias is None else out + bias


def layer_norm(params: Params, name: str, x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * params[f"{name}.weight"] + params[f"{name}.bias"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def rmc_step(
    params: Params,
    x: np.ndarray,
    memory: np.ndarray,
    *,
    num_heads: int,
    head_size: int,
    key_size: int,
    num_blocks: int,
    mlp_layers: int,
    gate_style: str | None,
    forget_bias: float = 1.0,
    input_bias: float = 0.0,
    query_scale: float | None = None,
) -> np.ndarray:
    """DESIGN section 4, one step: x (B, I), memory (B, N, S) -> new memory (B, N, S).

    ``query_scale`` defaults to key_size**-0.5; tests pass others to show it matters.
    """
    query_scale = key_size**-0.5 if query_scale is None else query_scale
    batch, slots, size = memory.shape
    projected = linear(params, "input_projection", x)  # (B, S)
    rows = np.concatenate([memory, projected[:, None]], axis=1)  # (B, N+1, S)
    for block in range(num_blocks):
        qkv = linear(params, f"blocks.{block}.qkv", rows)
        qkv = layer_norm(params, f"blocks.{block}.qkv_norm", qkv)
        qkv = qkv.reshape(batch, slots + 1, num_heads, 2 * key_size + head_size)
        q = qkv[..., :key_size] * query_scale
        k = qkv[..., key_size : 2 * key_size]
        v = qkv[..., 2 * key_size :]
        weights = softmax(np.einsum("brhk,bshk->bhrs", q, k))
        attended = np.einsum("bhrs,bshv->brhv", weights, v).reshape(batch, slots + 1, size)
        rows = layer_norm(params, f"blocks.{block}.attention_norm", rows + attended)
        hidden = rows
        for layer in range(mlp_layers):
            hidden = linear(
                params, f"mlp.layers.{layer}", hidden if layer == 0 else np.maximum(hidden, 0)
            )
        rows = layer_norm(params, f"blocks.{block}.mlp_norm", rows + hidden)
    candidate = rows[:, :slots]
    if gate_style is None:
        return candidate
    gates = linear(params, "input_gate", projected)[:, None] + linear(
        params, "memory_gate", np.tanh(memory)
    )
    width = gates.shape[-1] // 2
    input_gate = sigmoid(gates[..., :width] + input_bias)
    forget_gate = sigmoid(gates[..., width:] + forget_bias)
    return input_gate * np.tanh(candidate) + forget_gate * memory


def gated_slot_step(
    params: Params, u: np.ndarray, memory: np.ndarray, *, num_heads: int
) -> np.ndarray:
    """DESIGN section 3's gated slot memory: u (B, H), memory (B, N, S) -> (B, N, S)."""
    batch, slots, size = memory.shape
    head = size // num_heads

    def heads(x):
        return x.reshape(batch, slots, num_heads, head)

    q = heads(linear(params, "attention.query", memory))
    k = heads(linear(params, "attention.key", memory))
    v = heads(linear(params, "attention.value", memory))
    weights = softmax(np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(head))
    attended = np.einsum("bhnm,bmhd->bnhd", weights, v).reshape(batch, slots, size)
    attended = linear(params, "attention.output", attended)
    p = linear(params, "input_projection", u) if "input_projection.weight" in params else u
    attended[:, 0] += p
    update = np.tanh(linear(params, "update", attended))
    # W_g acts on [A_i ; u]: the module stores its two column blocks separately.
    gate_weight = np.concatenate([params["gate_memory.weight"], params["gate_input.weight"]], 1)
    both = np.concatenate([attended, np.broadcast_to(u[:, None], (batch, slots, u.shape[1]))], -1)
    gate = sigmoid(both @ gate_weight.T + params["gate_memory.bias"])
    return gate * update + (1 - gate) * memory


def sub_params(params: Params, prefix: str) -> Params:
    """The parameters under ``prefix.``, with the prefix removed."""
    start = len(prefix) + 1
    return {name[start:]: value for name, value in params.items() if name.startswith(prefix + ".")}


def lstm_step(params: Params, x: np.ndarray, h: np.ndarray, c: np.ndarray):
    """torch.nn.LSTMCell: gates ordered i, f, g, o."""
    gates = (
        x @ params["weight_ih"].T
        + params["bias_ih"]
        + h @ params["weight_hh"].T
        + params["bias_hh"]
    )
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def relational_rnn_step(params: Params, x, h, c, memory, *, memory_kind: str, num_heads: int):
    """DESIGN section 3, one step of the cell; params of a RelationalRNNCell."""
    h, c = lstm_step(sub_params(params, "lstm"), x, h, c)
    memory_params = sub_params(params, "memory")
    if memory_kind == "gated_slot":
        memory = gated_slot_step(memory_params, h, memory, num_heads=num_heads)
    else:
        size = memory.shape[-1]
        memory = rmc_step(
            memory_params,
            h,
            memory,
            num_heads=num_heads,
            head_size=size // num_heads,
            key_size=size // num_heads,
            num_blocks=1,
            mlp_layers=2,
            gate_style="unit",
        )
    read = linear(params, "read", memory.mean(axis=1))
    output = np.tanh(linear(params, "combine", np.concatenate([h, read], axis=-1)))
    if "head.weight" in params:
        output = linear(params, "head", output)
    return output, h, c, memory

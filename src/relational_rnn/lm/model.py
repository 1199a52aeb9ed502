"""A language model over any recurrent core of the package.

    tokens (B, T) -> embedding (B, T, E) -> dropout -> core -> (B, T, C) -> dropout
                  -> [projection C -> E when tied and C != E] -> logits (B, T, V)

With ``tie_weights`` the output layer shares its weight (V, E) with the embedding.
The core's state is returned and taken back, so a caller can carry it from chunk to
chunk; ``detach_state`` cuts the graph between chunks for truncated BPTT.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .._checks import check_positive_int


def detach_state(state: Any) -> Any:
    """The state of any core of the package (a tensor or a NamedTuple of tensors), detached."""
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(*(part.detach() for part in state))


class LanguageModel(nn.Module):
    """Embedding, dropout, a recurrent ``core``, dropout and logits over the vocabulary.

    ``logits, state = lm(tokens, state=None)``: tokens (B, T) int64, logits (B, T, V);
    ``state`` is the core's (None: its initial state).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        core: nn.Module,
        dropout: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("embed_size", embed_size)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if core.input_size != embed_size:
            raise ValueError(
                f"the core takes inputs of size {core.input_size}, the embedding has {embed_size}"
            )
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.dropout = nn.Dropout(dropout)
        self.core = core
        self.tie_weights = bool(tie_weights)
        self.projection = (
            nn.Linear(core.output_size, embed_size)
            if tie_weights and core.output_size != embed_size
            else None
        )
        self.decoder = nn.Linear(embed_size if tie_weights else core.output_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight  # (V, E), shared

    @property
    def vocab_size(self) -> int:
        return self.embedding.num_embeddings

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        output, state = self.core(x, state)  # (B, T, C)
        output = self.dropout(output)
        if self.projection is not None:
            output = self.projection(output)  # (B, T, E)
        return self.decoder(output), state  # (B, T, V)

    def extra_repr(self) -> str:
        return f"tie_weights={self.tie_weights}"

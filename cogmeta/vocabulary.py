"""Token vocabularies for sequence tasks: special tokens, encoding, padding (defined once, shared).

Every vocabulary starts with the same three special tokens at the same ids:

    PAD = 0   padding after the end of a sequence (never a target; masked out of losses and attention)
    SOS = 1   start-of-sequence, the decoder's first input
    EOS = 2   end-of-sequence, appended to every encoded sequence (inputs and targets, as in Lake 2019)

followed by the task's words in a fixed order. Padded batches are time-major ``[T, B]`` int32 arrays
with a ``[B]`` int32 length vector (lengths count the EOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

PAD, SOS, EOS = "<pad>", "<sos>", "<eos>"
SPECIALS = (PAD, SOS, EOS)
PAD_ID, SOS_ID, EOS_ID = 0, 1, 2


class VocabularyError(ValueError):
    """A word that is not in a vocabulary, an empty or over-long sequence, or mismatched vocabularies."""


@dataclass(frozen=True)
class Vocabulary:
    """``SPECIALS + words``; ``name`` appears in error messages ("command", "action")."""

    name: str
    words: tuple[str, ...]

    def __post_init__(self) -> None:
        words = tuple(self.words)
        object.__setattr__(self, "words", words)
        clash = [w for w in words if w in SPECIALS]
        if clash:
            raise VocabularyError(f"{self.name} vocabulary: {clash} are reserved special tokens")
        if len(set(words)) != len(words):
            raise VocabularyError(f"{self.name} vocabulary has duplicate words: {words}")

    @property
    def tokens(self) -> tuple[str, ...]:
        return SPECIALS + self.words

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.words)

    def index(self, word: str) -> int:
        try:
            return len(SPECIALS) + self.words.index(word)
        except ValueError:
            raise VocabularyError(
                f"unknown {self.name} word {word!r}; the {self.name} vocabulary is: {' '.join(self.words)}"
            ) from None

    def encode(self, words: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """Word ids followed by EOS, shape ``[len(words) + 1]``; errors for empty or over-long input."""
        if len(words) == 0:
            raise VocabularyError(f"empty {self.name} sequence: give at least one word")
        if max_length is not None and len(words) > max_length:
            raise VocabularyError(
                f"{self.name} sequence has {len(words)} words, more than the maximum {max_length} of this task: "
                f"{' '.join(words)}"
            )
        return np.array([self.index(w) for w in words] + [EOS_ID], dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> tuple[str, ...]:
        """Words up to (not including) the first EOS; PAD and SOS are skipped."""
        out = []
        tokens = self.tokens
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, SOS_ID):
                continue
            out.append(tokens[i])
        return tuple(out)

    def to_dict(self) -> dict:
        return {"name": self.name, "tokens": list(self.tokens)}

    def check_matches(self, tokens: Sequence[str], where: str) -> None:
        """Raise unless ``tokens`` (e.g. stored in a checkpoint) equal this vocabulary's tokens."""
        if tuple(tokens) != self.tokens:
            raise VocabularyError(
                f"{self.name} vocabulary mismatch: {where} has {len(tokens)} tokens {list(tokens)}, "
                f"the task spec has {len(self)} tokens {list(self.tokens)}; a model only works with the "
                "vocabulary it was trained with (train a new one or use the matching task spec)"
            )


def pad_time_major(sequences: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack id sequences into ``([length, B] int32 padded with PAD, [B] int32 lengths)``."""
    out = np.full((length, len(sequences)), PAD_ID, dtype=np.int32)
    lengths = np.zeros(len(sequences), dtype=np.int32)
    for b, seq in enumerate(sequences):
        if len(seq) > length:
            raise VocabularyError(f"sequence of {len(seq)} tokens does not fit the padded length {length}")
        out[: len(seq), b] = seq
        lengths[b] = len(seq)
    return out, lengths

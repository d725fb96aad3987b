"""Token-by-token detection of a finished action, for backends that sample one token at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swirl.tags import ActionStopScanner

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_INCOMPLETE = "\ufffd"  # what a decoder prints for a UTF-8 sequence cut in the middle


class ActionStopDetector:
    """Feed sampled ids one at a time; learn when the first closing action tag is complete.

    Decodes incrementally (a window from the last stable offset, so each call decodes a few
    tokens, not the whole turn) and scans only the new text with :class:`ActionStopScanner`.
    A token that ends inside a multi-byte character is held until the character completes, so the
    text fed to the scanner is always a prefix of ``tokenizer.decode(all ids)``.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.scanner = ActionStopScanner()
        self._prefix_offset = 0  # start of the decode window
        self._read_offset = 0  # ids before this are already in the scanner's text

    def feed(self, token_id: int) -> bool:
        """Append one sampled id; True once the text so far holds a complete closing tag."""
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        window = self.ids[self._prefix_offset :]
        # Decoding with the previous tokens as context keeps word-initial spaces right.
        before = decode(
            self.ids[self._prefix_offset : self._read_offset], skip_special_tokens=False
        )
        text = decode(window, skip_special_tokens=False)
        if len(text) <= len(before) or text.endswith(_INCOMPLETE):
            return False
        self._prefix_offset = self._read_offset
        self._read_offset = len(self.ids)
        return self.scanner.feed(text[len(before) :]) >= 0

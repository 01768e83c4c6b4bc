"""Legacy text encodings Python does not ship: 7-bit Swedish ASCII (ISO 646-SE, SEN 850200 B).

In ISO 646-SE the bytes of ``@ [ \\ ] ^ ` { | } ~`` stand for ``É Ä Ö Å Ü é ä ö å ü``, so
``J|nk|ping`` is Jönköping. Bytes above 0x7F do not exist in a 7-bit export: they decode to
U+FFFD, which the pipeline quarantines as undecodable. Registered as ``iso646_se`` (alias
``iso646-se``) when this module is imported.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # collections.abc.Buffer from Python 3.12
    from typing_extensions import Buffer

SWEDISH_REPLACEMENTS = {
    "@": "É",
    "[": "Ä",
    "\\": "Ö",
    "]": "Å",
    "^": "Ü",
    "`": "é",
    "{": "ä",
    "|": "ö",
    "}": "å",
    "~": "ü",
}
NAME = "iso646_se"

_DECODING_TABLE = (
    "".join(SWEDISH_REPLACEMENTS.get(chr(byte), chr(byte)) for byte in range(128)) + "\ufffe" * 128
)
_ENCODING_TABLE = codecs.charmap_build(_DECODING_TABLE)


class _Codec(codecs.Codec):
    def encode(self, text: str, errors: str = "strict") -> tuple[bytes, int]:
        return codecs.charmap_encode(text, errors, _ENCODING_TABLE)

    def decode(self, data: Buffer, errors: str = "strict") -> tuple[str, int]:
        return codecs.charmap_decode(data, errors, _DECODING_TABLE)


class _IncrementalEncoder(codecs.IncrementalEncoder):
    def encode(self, text: str, final: bool = False) -> bytes:
        return codecs.charmap_encode(text, self.errors, _ENCODING_TABLE)[0]


class _IncrementalDecoder(codecs.IncrementalDecoder):
    def decode(self, data: Buffer, final: bool = False) -> str:
        return codecs.charmap_decode(data, self.errors, _DECODING_TABLE)[0]


class _StreamReader(_Codec, codecs.StreamReader):
    pass


class _StreamWriter(_Codec, codecs.StreamWriter):
    pass


_INFO = codecs.CodecInfo(
    name=NAME,
    encode=_Codec().encode,
    decode=_Codec().decode,
    incrementalencoder=_IncrementalEncoder,
    incrementaldecoder=_IncrementalDecoder,
    streamreader=_StreamReader,
    streamwriter=_StreamWriter,
)


def _search(name: str) -> codecs.CodecInfo | None:
    return _INFO if name.replace("-", "_").lower() == NAME else None


codecs.register(_search)

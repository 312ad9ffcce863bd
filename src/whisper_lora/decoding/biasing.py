"""Decoding with a glossary: a first pass, the terms each file probably holds, a second pass.

A glossary can hold thousands of terms; Whisper's prompt holds 223 tokens, and a list of terms
the audio does not say only distracts the model. So every file is first decoded as usual; its
text is matched against the glossary by spelling and by sound (Glossary.select: a word, a pair
of words or a pair written as one that comes close to a term); the files that matched are decoded
again with those terms in the prompt (long files: each piece gets the terms heard in it).

The second pass can also change words that no term is about (a prompt shifts the whole
decoding; seen: "Please send" became "Clean and" when a name was listed). So its text is only
taken where it differs from the first pass by writing a glossary term: the two word sequences
are aligned, and each stretch where they differ takes the second pass's words if they hold a
listed term, else keeps the first pass's (`splice`). Files with timestamps, whose segments can
shift between passes, take the second pass whole if it writes a listed term the first lacked,
else keep the first. Measured on the Dutch set: benchmarks/glossary.py, RESULTS.md.
"""

from __future__ import annotations

import difflib

from .results import Decoded, Segment
from ..data.glossary import Glossary, normalize


def decode_with_glossary(backend, audios, first: list[Decoded], glossary: Glossary, long: bool) -> list[Decoded]:
    """`first` (each audio's first-pass Decoded) improved by a second pass with each file's terms.

    long: the audios are over 30 s (Backend.decode_long, terms per piece), else short files
    (Backend.decode_short). Files with no matching term keep their first pass and cost nothing more."""
    if long:
        terms = [[(s.start, s.end, glossary.select(s.text, language=dec.language)) for s in dec.segments]
                 for dec in first]
        todo = [i for i, timed in enumerate(terms) if any(t for _, _, t in timed)]
    else:
        terms = [glossary.select(" ".join(s.text for s in dec.segments), language=dec.language) for dec in first]
        todo = [i for i, t in enumerate(terms) if t]
    if not todo:
        return list(first)
    audios, terms = [audios[i] for i in todo], [terms[i] for i in todo]
    # Short files one to a window: a window of several clips whose prompt lists their terms came
    # back as one segment over all of them (29 of 29 windows in doubt on the Dutch set), so
    # packing would only add a failed pass.
    second = backend.decode_long(audios, terms=terms) if long else backend.decode_short(audios, terms=terms, pack=False)
    out = list(first)
    for i, dec in zip(todo, second):
        out[i] = choose(first[i], dec, glossary)
    return out


def choose(first: Decoded, second: Decoded, glossary: Glossary) -> Decoded:
    """What to keep of the two passes of one file (see the module docstring)."""
    if len(first.segments) == 1 and len(second.segments) == 1:
        a, b = first.segments[0], second.segments[0]
        return Decoded([Segment(a.start, a.end, splice(a.text, b.text, glossary))],
                       first.language, first.language_probability)
    before = set(glossary_terms(" ".join(s.text for s in first.segments), glossary))
    after = set(glossary_terms(" ".join(s.text for s in second.segments), glossary))
    return second if after - before else first


def splice(first: str, second: str, glossary: Glossary) -> str:
    """The first pass's text with the stretches where the second differs by writing a listed term."""
    a, b = first.split(), second.split()
    na, nb = [normalize(w) for w in a], [normalize(w) for w in b]
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, na, nb, autojunk=False).get_opcodes():
        if op == "equal":
            out += a[i1:i2]
        elif glossary_terms(" ".join(b[j1:j2]), glossary) and not glossary_terms(" ".join(a[i1:i2]), glossary):
            out += b[j1:j2]
        else:
            out += a[i1:i2]
    return " ".join(out)


def glossary_terms(text: str, glossary: Glossary) -> list[str]:
    """The glossary terms written in `text` (exactly, as whole words, case aside)."""
    padded = f" {normalize(text)} "
    return [t for t, key in zip(glossary.terms, glossary.keys()) if key and f" {key} " in padded]

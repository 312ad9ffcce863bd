"""Word n-gram language models: built from the text a user has, read from ARPA or KenLM files,
and queried one word at a time for fusion into beam search (decoding/lm_fusion.py).

`build` estimates an interpolated Kneser-Ney model (the smoothing KenLM's lmplz and SRILM use)
and writes it as ARPA, the format every n-gram tool reads. Words are the text's words in lower
case without punctuation (glossary.normalize): the same words in building and in decoding, so
"Trivalenza," and "trivalenza" are one word. Each line is one sentence, between <s> and </s>.

`load` reads a model with kenlm when it is installed (`pip install 'whisper-lora[lm]'`: C++,
fast on large files, and the only reader of KenLM's binary format), else ARPA files with the
plain Python reader here (fine for the models `build` makes from a few MB of text). Both give
the same log-probabilities (tests/test_lm.py).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import math
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

from ..errors import OptionsError
from .glossary import normalize

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
DEFAULT_ORDER = 3
LN10 = math.log(10.0)
# Fusion into decoding (--lm): the weight of the model's natural-log probability and the bonus per
# word, chosen on the Dutch validation set (benchmarks/glossary.py, RESULTS.md).
DEFAULT_LM_WEIGHT = 0.3
DEFAULT_LM_BONUS = 1.0


class LMError(OptionsError):
    """A language model or its text that cannot be used."""


def words(text: str) -> list[str]:
    return normalize(text).split()


# ---- building -----------------------------------------------------------------------------------

def read_sentences(path: str | os.PathLike) -> list[list[str]]:
    """The sentences of a text file (one per line) or of a manifest's `text` fields (.json/.jsonl)."""
    path = Path(path)
    if not path.is_file():
        raise LMError(f"--text {path}: no such file")
    if path.suffix in (".json", ".jsonl"):
        from .manifest import read_manifest  # a manifest's transcripts: the text a user surely has

        lines = [row.text for row in read_manifest(path)]
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise LMError(f"--text {path}: not UTF-8 text ({e}); save it as UTF-8") from None
    sentences = [w for w in map(words, lines) if w]
    if not sentences:
        raise LMError(f"--text {path}: no words in it; give one sentence per line")
    return sentences


def build(sentences: list[list[str]], order: int = DEFAULT_ORDER) -> str:
    """ARPA text of an interpolated Kneser-Ney model of `order` over the sentences.

    Counts: the highest order and n-grams that start with <s> keep their raw counts; lower
    orders count the distinct words seen before them (continuation counts). One discount per
    order, D = n1 / (n1 + 2 n2) from its counts of counts. The unigrams are interpolated with a
    uniform distribution over the vocabulary and <unk>, so an unseen word has a probability."""
    if order < 1:
        raise LMError(f"--order {order}: must be at least 1")
    raw = [Counter() for _ in range(order + 1)]  # raw[n][gram]
    for sentence in sentences:
        padded = [BOS] + sentence + [EOS]
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                gram = tuple(padded[i:i + n])
                if gram != (BOS,):
                    raw[n][gram] += 1
    counts = [Counter() for _ in range(order + 1)]
    counts[order] = raw[order]
    for n in range(1, order):
        left = Counter(gram[1:] for gram in raw[n + 1])  # distinct words before each n-gram
        for gram, c in raw[n].items():
            counts[n][gram] = c if gram[0] == BOS else left[gram]
        counts[n] = Counter({g: c for g, c in counts[n].items() if c > 0})
    discounts = [0.0] + [_discount(counts[n]) for n in range(1, order + 1)]

    vocab = sorted({g[0] for g in counts[1]} | {UNK})
    probs: list[dict] = [{} for _ in range(order + 1)]
    backoffs: list[dict] = [{} for _ in range(order + 1)]
    for n in range(1, order + 1):
        totals, types = defaultdict(int), defaultdict(int)
        for gram, c in counts[n].items():
            totals[gram[:-1]] += c
            types[gram[:-1]] += 1
        d = discounts[n]
        for context in totals:
            backoffs[n - 1][context] = d * types[context] / totals[context]
        for gram, c in counts[n].items():
            context = gram[:-1]
            lower = 1.0 / len(vocab) if n == 1 else _interpolated(probs, backoffs, gram[1:])
            probs[n][gram] = (max(c - d, 0.0) + d * types[context] * lower) / totals[context]
    probs[1][(UNK,)] = backoffs[0][()] / len(vocab)
    return _arpa(probs, backoffs, order)


def _discount(counts: Counter) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return 0.5  # too little text to estimate it: the usual middle value
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)


def _interpolated(probs, backoffs, gram: tuple) -> float:
    """P(gram[-1] | gram[:-1]) from the orders estimated so far (gram is one order below)."""
    n = len(gram)
    if gram in probs[n]:
        return probs[n][gram]
    if n == 1:
        return probs[1][(UNK,)] if (UNK,) in probs[1] else backoffs[0][()] / max(1, len(probs[1]))
    return backoffs[n - 1].get(gram[:-1], 1.0) * _interpolated(probs, backoffs, gram[1:])


def _arpa(probs, backoffs, order: int) -> str:
    out = ["", "\\data\\"]
    unigrams = dict(probs[1])
    unigrams[(BOS,)] = None  # only ever a context
    sizes = [len(unigrams)] + [len(probs[n]) for n in range(2, order + 1)]
    out += [f"ngram {n}={size}" for n, size in enumerate(sizes, 1)]
    for n in range(1, order + 1):
        out += ["", f"\\{n}-grams:"]
        table = unigrams if n == 1 else probs[n]
        for gram in sorted(table):
            p = table[gram]
            line = f"{-99.0 if p is None else math.log10(p):.6f}\t{' '.join(gram)}"
            if n < order and gram in backoffs[n]:
                line += f"\t{math.log10(backoffs[n][gram]):.6f}"
            out.append(line)
    out += ["", "\\end\\", ""]
    return "\n".join(out)


def build_file(text: str | os.PathLike, output: str | os.PathLike, order: int = DEFAULT_ORDER) -> Path:
    """`whisper-lora lm build`: an ARPA file from a text file or manifest, written atomically."""
    from ..fileio import write_text

    return write_text(output, build(read_sentences(text), order))


# ---- reading and querying ----------------------------------------------------------------------

class NgramLM:
    """log10 P(word | the words before it in the sentence), with the <s> before the first."""

    def __init__(self, order: int, query):
        self.order = order
        self._query = query  # (context tuple with <s>, at most order-1 words; word) -> log10 p

    @functools.lru_cache(maxsize=1 << 18)
    def logprob(self, context: tuple, word: str) -> float:
        """log10 P(word | context); context: the sentence's words so far (any length)."""
        context = ((BOS,) + tuple(context))[-(self.order - 1):] if self.order > 1 else ()
        return self._query(context, word)

    def end(self, context: tuple) -> float:
        return self.logprob(context, EOS)

    def sentence(self, sentence: list[str]) -> float:
        """log10 P of a whole sentence, </s> included (what kenlm's Model.score gives)."""
        total = sum(self.logprob(tuple(sentence[:i]), w) for i, w in enumerate(sentence))
        return total + self.end(tuple(sentence))


def load(path: str | os.PathLike) -> NgramLM:
    """The model in an ARPA (.arpa, .arpa.gz) or KenLM binary file; read once per process while
    the file is unchanged."""
    path = Path(path)
    if not path.is_file():
        raise LMError(f"--lm {path}: no such file; build one with `whisper-lora lm build --text FILE --output {path}`")
    stat = path.stat()
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load(name: str, _mtime: int, _size: int) -> NgramLM:
    path = Path(name)
    try:
        import kenlm
    except ImportError:
        kenlm = None
    if kenlm is not None:
        try:
            with _quiet_stderr():  # kenlm prints a progress bar and a hint about its binary format
                model = kenlm.Model(str(path))
        except (OSError, RuntimeError) as e:
            raise LMError(f"--lm {path}: not an ARPA or KenLM file kenlm can read ({e})") from None
        return NgramLM(model.order, _kenlm_query(model))
    if _is_binary(path):
        raise LMError(f"--lm {path}: a KenLM binary file needs kenlm: pip install 'whisper-lora[lm]'")
    return _read_arpa(path)


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _kenlm_query(model):
    import kenlm

    def query(context: tuple, word: str) -> float:
        state, out = kenlm.State(), kenlm.State()
        if context and context[0] == BOS:
            model.BeginSentenceWrite(state)
            context = context[1:]
        else:
            model.NullContextWrite(state)
        for w in context:
            model.BaseScore(state, w, out)
            state, out = out, state
        return model.BaseScore(state, word, out)

    return query


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(64)
    return not head.startswith(b"\x1f\x8b") and b"\\data\\" not in head and b"\x00" in head


def _read_arpa(path: Path) -> NgramLM:
    opener = gzip.open if path.suffix == ".gz" else open
    probs, backoffs, order, n = {}, {}, 0, 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                    continue
                if line.startswith("\\") and line.endswith("-grams:"):
                    n = int(line[1:].split("-")[0])
                    order = max(order, n)
                    continue
                fields = line.split("\t") if "\t" in line else line.split()
                if n == 0 or len(fields) < 2:
                    raise LMError(f"--lm {path}, line {number}: not an ARPA n-gram line: {line[:60]!r}")
                gram = tuple(fields[1].split()) if "\t" in line else tuple(fields[1:1 + n])
                rest = fields[2:] if "\t" in line else fields[1 + n:]
                probs[gram] = float(fields[0])
                if rest:
                    backoffs[gram] = float(rest[0])
    except UnicodeDecodeError:
        raise LMError(f"--lm {path}: not a UTF-8 ARPA file") from None
    if not order:
        raise LMError(f"--lm {path}: no n-grams in it (an ARPA file has \\1-grams: and so on)")
    unk = probs.get((UNK,), -100.0)

    def query(context: tuple, word: str) -> float:
        penalty = 0.0  # ARPA's back-off: the longest n-gram there, times the back-off weights passed
        for start in range(len(context) + 1):
            gram = context[start:] + (word,)
            if gram in probs:
                return penalty + probs[gram]
            if start < len(context):
                penalty += backoffs.get(context[start:], 0.0)
        return penalty + unk

    return NgramLM(order, query)

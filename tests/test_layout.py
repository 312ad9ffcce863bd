"""The package's import graph: layers follow the data path, and no module imports itself back.

Read from the source with ast (imports inside functions count too: a lazy import that closes a
circle is still a circle in the design), so the test fails as soon as a module reaches up or sideways.
"""

from __future__ import annotations

import ast
from pathlib import Path

import whisper_lora

PACKAGE = Path(whisper_lora.__file__).parent
BASE = {"errors", "audio", "tokens", "languages", "devices", "fileio", "run_files", "data"}
# What each part may import besides itself. Stages sit above the base; decoding reads models,
# training reads models, scores its validation and quiets generate; the front doors use any stage.
ALLOWED = {
    "base": {"base"},
    "models": {"base"},
    "scoring": {"base"},
    "synthetic": {"base"},
    "corpora": {"base", "models"},  # real recordings fetched into the models' cache folder
    "decoding": {"base", "models"},
    "training": {"base", "models", "scoring", "decoding.hf_logits"},
    "export": {"base", "models"},  # merge, CTranslate2 and ggml files from a model
    "shards": {"base", "decoding"},  # file lists across processes; handed a transcriber, imports none
    "front": {"base", "models", "scoring", "synthetic", "corpora", "decoding", "training", "export", "shards",
              "front"},
    "streaming": {"base", "models", "decoding", "front"},  # live streams over transcribe's Transcriber
    "serve": {"base", "models", "decoding", "front", "streaming"},
    "cli": {"base", "models", "scoring", "synthetic", "corpora", "decoding", "training", "export", "front",
            "streaming", "serve", "cli"},
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path  # "" is the package itself
    return names


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports (dotted, relative to the package)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if name else []
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif node.module and node.module.split(".")[0] == "whisper_lora":
                base = []
            else:
                continue
            module = (node.module or "") if node.level else node.module.removeprefix("whisper_lora").lstrip(".")
            target = ".".join(base + ([module] if module else []))
            for alias in node.names:  # `from . import packing` imports a module
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "whisper_lora":
                    found.add(alias.name.removeprefix("whisper_lora").lstrip("."))
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports_of(name, path, set(names)) for name, path in names.items()}


def part(name: str) -> str:
    top = name.split(".")[0]
    if name == "" or top in ("cli", "__main__"):
        return "cli"
    if top in BASE:
        return "base"
    if top in ("models", "scoring", "synthetic", "corpora", "decoding", "training", "export", "shards", "streaming",
               "serve"):
        return top
    return "front"  # train, transcribe, evaluate, demo


def test_every_import_goes_down_the_layers():
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            own, theirs = part(name), part(target)
            if own == theirs or theirs in ALLOWED[own] or target in ALLOWED[own]:
                continue
            wrong.append(f"{name or 'whisper_lora'} ({own}) imports {target or 'whisper_lora'} ({theirs})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    edges = graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_graph_sees_imports():
    # The parser must find what is there, or the tests above could never fail.
    edges = graph()
    assert "errors" in edges["audio"]
    assert "decoding.long_form" in edges["decoding.hf"]  # `from . import long_form`
    assert "decoding.options" in edges["transcribe"]
    assert part("decoding.hf") == "decoding" and part("train") == "front" and part("cli.train") == "cli"


FRONT_DOORS = {"train", "transcribe", "evaluate", "demo"}
MAX_LINES = 400  # past this a module holds more than one job: split it (docs/design.md)


def test_the_top_level_holds_the_front_doors_and_the_base():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    others = sorted(top - FRONT_DOORS - BASE)
    assert not others, f"move these into the subpackage of their stage: {others}"
    assert len(top) + 2 <= 14


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in module_names().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these, one job per module: {long}"

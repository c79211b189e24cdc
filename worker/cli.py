"""``ai-models-worker``: prepare, inspect, materialize.

    ai-models-worker prepare SOURCE --to DEST      source → ModelPack artifact (registry or dir)
    ai-models-worker inspect SOURCE                metadata only, no weight download
    ai-models-worker materialize REF --to DIR      artifact (by digest) → files in a directory
    ai-models-worker materialize-pod --digests F --token F --endpoint URL --to DIR
                                                   a consuming pod's models from the delivery
                                                   endpoint (the injected init container)

SOURCE: ``https://huggingface.co/<org>/<repo>[/tree/<rev>][?revision=…][&file=<name>.gguf]``,
``https://ollama.com/library/<name>[:tag]``, or a local directory / ``.gguf`` / ``.safetensors``.
DEST / REF: ``host[:port]/repository[:tag|@digest]`` or a local OCI layout directory
``dir[:tag|@digest]`` (absolute, ``./…``, or a relative path whose first component is not a
host: one with a dot, a port or ``localhost``; a layout DEST without a tag is tagged ``latest``).

Success prints one JSON line on stdout (for ``prepare``: ``{artifact, resolved, source}``, the
exact shapes of the status fields; ``inspect --json``: ``{resolved, source, files, notes}``) and
exits 0. Failure prints one JSON line ``{"reason", "message"}`` on stderr, writes it to the
termination log in a pod, and exits 2 when permanent (fix the source) or 1 when transient
(retry). Logs go to stderr: a line per event for people (time, level, message, key=value),
JSON lines with ``AI_MODELS_LOG_FORMAT=json`` (``worker/logs.py``).

Environment (the Job sets those ``api/protocol.py`` names; all optional on a laptop):
``POD_NAME``/``POD_NAMESPACE`` (report progress and the result on this pod), ``HF_ENDPOINT``,
``HF_TOKEN`` or ``HF_TOKEN_PATH``, ``OLLAMA_REGISTRY``, ``SOURCES_CA_BUNDLE``,
``DOCKER_CONFIG`` (directory with ``config.json``: registry credentials),
``AI_MODELS_REGISTRY_CA``, ``AI_MODELS_REGISTRY_INSECURE``, ``AI_MODELS_REGISTRY_ATTEMPTS``,
``AI_MODELS_WORKSPACE``, ``AI_MODELS_PROGRESS_INTERVAL``, ``AI_MODELS_TRANSFER_CONCURRENCY``,
``AI_MODELS_TERMINATION_LOG``, ``AI_MODELS_LOG_FORMAT`` (``text``, the default, or ``json``);
``materialize-pod``: ``AI_MODELS_DELIVERY_CA`` (CA file of an HTTPS delivery endpoint),
``POD_NAMESPACE`` (else the token's namespace claim).

Start-up cost: this module imports only ``argparse`` and the standard library, so ``--help`` and
a wrong argument answer at once; the rest (logging, the error types, the command's own modules)
is imported by ``worker.cli_run`` once the arguments are valid; ``prepare`` does not import
the pull side (``worker.commands``).
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai-models-worker", description="Prepare AI models as ModelPack OCI artifacts."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="source → ModelPack artifact")
    prepare.add_argument("source")
    prepare.add_argument("--to", dest="dest", required=True, help="registry reference or directory")
    inspect = commands.add_parser(
        "inspect", help="print resolved metadata without downloading weights"
    )
    inspect.add_argument("source")
    inspect.add_argument(
        "--json", action="store_true", help="one JSON object instead of a readable summary"
    )
    materialize = commands.add_parser("materialize", help="artifact → directory")
    materialize.add_argument("ref")
    materialize.add_argument("--to", dest="dest", required=True, type=Path)
    pod = commands.add_parser(
        "materialize-pod", help="a pod's models (digests file) from the delivery endpoint → DIR"
    )
    pod.add_argument("--digests", required=True, type=Path, help="the digests annotation file")
    pod.add_argument("--token", required=True, type=Path, help="the projected token FILE")
    pod.add_argument("--endpoint", required=True, help="http(s)://host:port of the delivery")
    pod.add_argument("--to", dest="dest", required=True, type=Path, help="/models")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    gc.disable()  # until the modules are loaded: worker.cli_run.settle_imports
    from worker.cli_run import run  # the imports of logging and the command start here

    return run(args)

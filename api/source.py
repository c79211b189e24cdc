"""One spelling per source: the canonical URL of a Hugging Face repository or an Ollama model.

Users write one source many ways (``hf.co``, ``www.``, a trailing slash, ``/tree/<rev>``,
``?revision=``, ``/blob/<rev>/<file>.gguf``). The worker records the canonical form in the
artifact, so one source at one revision is one digest whatever the spelling; the controller
groups Models by ``source_repository`` to name repositories that may already hold the same
blobs (cross-repository mount, docs/oci.md). Validation stays in ``worker/sources/spec.py``;
``source_repository`` is only a grouping key (a wrong key costs a mount attempt, never a
wrong artifact: a mount is by digest).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

HUGGING_FACE_URL = "https://huggingface.co"
OLLAMA_LIBRARY_URL = "https://ollama.com/library"
HUGGING_FACE_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})
OLLAMA_HOSTS = frozenset({"ollama.com", "www.ollama.com"})
_HUB_PAGES = frozenset({"tree", "blob", "resolve"})


def hugging_face_url(repo_id: str, gguf_file: str | None = None) -> str:
    """``https://huggingface.co/<org>/<repo>``, with ``?file=<path>`` when one GGUF is picked."""
    url = f"{HUGGING_FACE_URL}/{repo_id}"
    return f"{url}?file={quote(gguf_file, safe='/')}" if gguf_file else url


def ollama_url(name: str, tag: str) -> str:
    """``https://ollama.com/library/<name>:<tag>``."""
    return f"{OLLAMA_LIBRARY_URL}/{name}:{tag}"


def source_repository(url: str) -> str | None:
    """The repository a Hugging Face or Ollama URL names, spelled canonically, without revision,
    tag or file (``https://huggingface.co/<org>/<repo>``, ``https://ollama.com/library/<name>``);
    None for anything else."""
    parts = urlsplit(url)
    host = parts.netloc.lower()
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "https" or not segments:
        return None
    if host in HUGGING_FACE_HOSTS:
        repo_len = 1 if len(segments) == 1 or segments[1] in _HUB_PAGES else 2
        return hugging_face_url("/".join(segments[:repo_len]))
    if host in OLLAMA_HOSTS and len(segments) == 2 and segments[0] == "library":
        name = segments[1].partition(":")[0]
        return f"{OLLAMA_LIBRARY_URL}/{name}" if name else None
    return None

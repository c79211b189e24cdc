"""The measured child processes of ``bench_prepare.py`` other than the worker itself.

Each runs as its own process so that its peak RSS and CPU time are its own; only the standard
library is imported at the top, so a child's memory is what its task needs.

    bench_prepare_children.py raw HOST REPOSITORY STREAMS PATH=sha256:HEX ...
        The registry's raw ingest: per file one POST (upload session) and one streaming PUT
        ``?digest=`` whose body is sent with ``sendfile(2)`` from the page cache, so the client
        costs next to nothing and the registry's own ingest is what is measured. STREAMS files
        at once, each on its own connection. Prints ``{"seconds": …}`` (transfer only).

    bench_prepare_children.py baseline ENDPOINT REPO_ID DOWNLOAD_DIR HOST TARGET CHUNK
        What a user would script: ``huggingface_hub.snapshot_download(repo_id, endpoint=…,
        local_dir=…)``, then oras-py's chunked push of every downloaded file (plain HTTP,
        ``auth_backend="basic"``, no ``login()``). Prints the seconds of each step and the peak
        RSS after the download.

    bench_prepare_children.py measure RESULT_FILE ARGV...
        Starts ARGV with this process's stdio, waits for it with ``wait4`` and writes its wall
        time, peak RSS (``ru_maxrss``) and CPU seconds to RESULT_FILE as JSON; exits with its
        exit code. Why a go-between: Linux carries the address space's high-water mark across
        ``exec`` (``ru_maxrss`` of a process spawned by the benchmark, whose Hub emulator holds
        tens of MiB, would start at the benchmark's own peak); spawned from this small process,
        a child's ``ru_maxrss`` is its own.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _put_one(host: str, repository: str, path: Path, digest: str) -> None:
    connection = http.client.HTTPConnection(host, timeout=600)
    try:
        connection.request(
            "POST", f"/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"}
        )
        answer = connection.getresponse()
        answer.read()
        location = answer.getheader("Location")
        if answer.status != 202 or not location:
            raise RuntimeError(f"POST upload: {answer.status} {answer.reason}")
        parts = urlsplit(location)
        query = f"{parts.query}&" if parts.query else ""
        connection.putrequest("PUT", f"{parts.path}?{query}digest={quote(digest, safe=':')}")
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("Content-Length", str(path.stat().st_size))
        connection.endheaders()
        assert connection.sock is not None
        with path.open("rb") as handle:
            connection.sock.sendfile(handle)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 201:
            raise RuntimeError(f"PUT {path.name}: {answer.status} {body[:300]!r}")
    finally:
        connection.close()


def raw(host: str, repository: str, streams: int, items: list[str]) -> dict[str, float]:
    files = [(Path(path), digest) for path, _, digest in (i.rpartition("=") for i in items)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, streams)) as pool:
        for future in [pool.submit(_put_one, host, repository, p, d) for p, d in files]:
            future.result()
    return {"seconds": time.perf_counter() - started}


def baseline(
    endpoint: str, repo_id: str, download_dir: Path, host: str, target: str, chunk: int
) -> dict[str, float]:
    started = time.perf_counter()
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id, endpoint=endpoint, local_dir=download_dir)
    downloaded = time.perf_counter()
    download_hwm = _vm_hwm_mib()

    import oras.client

    client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
    os.chdir(download_dir)  # oras-py wants files relative to the working directory
    files = sorted(
        p.relative_to(download_dir).as_posix()
        for p in download_dir.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(download_dir).parts
    )
    client.push(
        target=f"{host}/{target}", files=files, do_chunked=True, chunk_size=chunk, quiet=True
    )
    pushed = time.perf_counter()
    return {
        "download_s": downloaded - started,
        "push_s": pushed - downloaded,
        "download_peak_rss_mib": download_hwm,
        "files": len(files),
    }


def measure(result_file: Path, argv: list[str]) -> int:
    started_at, started = time.time(), time.perf_counter()
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    result = {
        "started_at": started_at,
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "returncode": child.returncode,
    }
    result_file.write_text(json.dumps(result))
    return child.returncode


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "measure":
        sys.exit(measure(Path(args[0]), args[1:]))
    if command == "raw":
        result = raw(args[0], args[1], int(args[2]), args[3:])
    elif command == "baseline":
        endpoint, repo_id, download_dir, host, target, chunk = args
        result = baseline(endpoint, repo_id, Path(download_dir), host, target, int(chunk))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The Hub facade without a socket: httpx2's MockTransport plays the Hub's answers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx2
import pytest

from worker.errors import (
    InvalidSource,
    RevisionNotFound,
    SourceNotFound,
    SourceUnauthorized,
    SourceUnavailable,
    WorkerError,
)
from worker.sources.hub_client import HubClient, raise_for_hub_error
from worker.sources.settings import SourceSettings

ENDPOINT = "https://hub.test"
SHA = "a" * 40
Handler = Callable[[httpx2.Request], httpx2.Response]


def _client(handler: Handler, token: str | None = None) -> HubClient:
    settings = SourceSettings(hf_endpoint=ENDPOINT, hf_token=token)
    return HubClient(settings, transport=httpx2.MockTransport(handler))


def _response(status: int, code: str | None = None, message: str | None = None) -> httpx2.Response:
    headers = {"X-Error-Code": code} if code else {}
    if message:
        headers["X-Error-Message"] = message
    return httpx2.Response(status, headers=headers, request=httpx2.Request("GET", ENDPOINT))


ERRORS: list[tuple[int, str | None, bool, type[WorkerError], str]] = [
    (
        401,
        "GatedRepo",
        False,
        SourceUnauthorized,
        "org/repo: the repository is gated; a Model's source cannot change: delete the Model "
        "and create it again with an authSecretRef whose Secret holds the token of an account "
        "that accepted its conditions",
    ),
    (403, "GatedRepo", True, SourceUnauthorized, "gated; the token's account"),
    (404, "RevisionNotFound", True, RevisionNotFound, "revision does not exist"),
    (404, "EntryNotFound", False, SourceNotFound, "file does not exist"),
    (401, "RepoNotFound", False, SourceUnauthorized, "does not exist or is private"),
    (404, "RepoNotFound", True, SourceNotFound, "or the token has no access"),
    (401, None, True, SourceUnauthorized, "refused the token (HTTP 401)"),
    (
        403,
        None,
        False,
        SourceUnauthorized,
        "org/repo: the Hub refused anonymous access (HTTP 403); a Model's source cannot change: "
        "delete the Model and create it again with an authSecretRef whose Secret holds a token "
        "that can read it",
    ),
    (404, None, False, SourceNotFound, "does not exist"),
    (400, None, False, InvalidSource, "malformed"),
    (429, None, False, SourceUnavailable, "HTTP 429"),
    (500, None, False, SourceUnavailable, "HTTP 500"),
    (503, None, True, SourceUnavailable, "HTTP 503"),
]


@pytest.mark.parametrize(("status", "code", "authenticated", "error", "text"), ERRORS)
def test_error_table(
    status: int, code: str | None, authenticated: bool, error: type[WorkerError], text: str
) -> None:
    with pytest.raises(error, match=re.escape(text)) as caught:
        raise_for_hub_error(_response(status, code), "org/repo", authenticated=authenticated)
    assert isinstance(caught.value.__cause__, httpx2.HTTPStatusError)


def test_success_and_redirects_raise_nothing() -> None:
    for status in (200, 206, 302):
        raise_for_hub_error(_response(status), "org/repo", authenticated=False)


def test_the_server_message_is_quoted_and_bounded() -> None:
    with pytest.raises(SourceNotFound) as caught:
        raise_for_hub_error(_response(404, "EntryNotFound", "x" * 1000), "s", authenticated=False)
    assert caught.value.message.endswith("(" + "x" * 300 + ")")


def test_revision_pins_and_reads_metadata() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.raw_path == b"/api/models/org/repo/revision/refs%2Fpr%2F1"
        return httpx2.Response(
            200,
            json={"sha": SHA, "pipeline_tag": "text-generation", "tags": ["a", 3, "a", "b"],
                  "gated": "auto", "private": False},
        )  # fmt: skip

    revision = _client(handler).revision("org/repo", "refs/pr/1")
    assert (revision.commit, revision.pipeline_tag, revision.tags, revision.gated) == (
        SHA,
        "text-generation",
        ("a", "b"),
        True,
    )


@pytest.mark.parametrize("body", [b"[]", b"not json", json.dumps({"sha": "main"}).encode()])
def test_a_malformed_revision_answer_is_unavailable(body: bytes) -> None:
    client = _client(lambda request: httpx2.Response(200, content=body))
    with pytest.raises(SourceUnavailable):
        client.revision("org/repo", None)


def test_the_token_goes_only_where_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    seen: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx2.Response(200, json={"sha": SHA})

    _client(handler).revision("org/repo", None)
    _client(handler, token="hf_given").revision("org/repo", None)
    assert seen == [None, "Bearer hf_given"]


def _tree_handler(pages: list[tuple[list[object], str | None]]) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        index = int(request.url.params.get("cursor", "0"))
        entries, next_url = pages[index]
        headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
        return httpx2.Response(200, json=entries, headers=headers)

    return handler


def _file(path: str, lfs: bool = False) -> dict[str, object]:
    entry: dict[str, object] = {"type": "file", "path": path, "size": 5, "oid": "b" * 40}
    if lfs:
        entry["lfs"] = {"oid": "c" * 64, "size": 5, "pointerSize": 130}
    return entry


def test_the_tree_is_listed_page_by_page() -> None:
    tree = f"{ENDPOINT}/api/models/org/repo/tree/{SHA}?recursive=true"
    handler = _tree_handler(
        [
            ([{"type": "directory", "path": "d"}, _file("d/a.json")], f"{tree}&cursor=1"),
            ([_file("m.safetensors", lfs=True)], None),
        ]
    )
    files = _client(handler).list_files("org/repo", SHA, limit=10)
    assert [(f.path, f.sha256) for f in files] == [("d/a.json", None), ("m.safetensors", "c" * 64)]


def test_the_tree_listing_stops_past_the_limit() -> None:
    tree = f"{ENDPOINT}/api/models/org/repo/tree/{SHA}?recursive=true"
    handler = _tree_handler([([_file("a"), _file("b")], f"{tree}&cursor=1")])
    assert len(_client(handler).list_files("org/repo", SHA, limit=1)) == 2


def test_a_next_page_on_another_host_is_refused() -> None:
    handler = _tree_handler([([_file("a")], "https://elsewhere.test/steal?cursor=1")])
    with pytest.raises(SourceUnavailable, match="another host"):
        _client(handler, token="hf_t").list_files("org/repo", SHA, limit=10)


def test_a_malformed_tree_entry_is_unavailable() -> None:
    handler = _tree_handler([([{"type": "file", "path": "a", "size": "5"}], None)])
    with pytest.raises(SourceUnavailable, match="malformed entry"):
        _client(handler).list_files("org/repo", SHA, limit=10)


CONTENT = bytes(range(256)) * 4


def _file_handler(honour_range: bool, start_override: int | None = None) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        header = request.headers.get("Range")
        if not honour_range or header is None:
            return httpx2.Response(200, content=CONTENT)
        first, _, last = header.removeprefix("bytes=").partition("-")
        start, end = int(first), int(last) if last else len(CONTENT) - 1
        shown = start if start_override is None else start_override
        headers = {"Content-Range": f"bytes {shown}-{end}/{len(CONTENT)}"}
        return httpx2.Response(206, content=CONTENT[start : end + 1], headers=headers)

    return handler


def test_ranged_reads() -> None:
    client = _client(_file_handler(honour_range=True))
    assert client.read_range("org/repo", SHA, "m.safetensors", 10, 20) == CONTENT[10:30]
    assert b"".join(client.stream("org/repo", SHA, "m", offset=1000)) == CONTENT[1000:]


def test_a_small_file_served_whole_is_sliced() -> None:
    client = _client(_file_handler(honour_range=False))
    assert client.read_range("org/repo", SHA, "config.json", 10, 20) == CONTENT[10:30]
    chunks = list(client.stream("org/repo", SHA, "config.json", offset=100, chunk_size=300))
    assert b"".join(chunks) == CONTENT[100:]


def test_a_large_range_served_whole_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker.sources.hub_client.MAX_UNRANGED_BYTES", 100)
    with pytest.raises(SourceUnavailable, match="ignored the Range"):
        _client(_file_handler(honour_range=False)).read_range("org/repo", SHA, "m", 200, 20)


def test_a_range_other_than_requested_is_refused() -> None:
    client = _client(_file_handler(honour_range=True, start_override=0))
    with pytest.raises(SourceUnavailable, match="range other than requested"):
        client.read_range("org/repo", SHA, "m", 10, 20)


def test_network_failures_are_transient() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(SourceUnavailable, match="did not answer in time"):
        _client(handler).revision("org/repo", None)

    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(SourceUnavailable, match="cannot reach the Hub: connection refused"):
        list(_client(refused).stream("org/repo", SHA, "m"))


def test_a_file_url_encodes_the_path_but_its_slashes() -> None:
    # What huggingface_hub's hf_hub_url gives for the same arguments (checked when it was dropped).
    client = _client(lambda request: httpx2.Response(200))
    assert client.file_url("org/repo", SHA, "d/x y#?%.bin") == (
        f"{ENDPOINT}/org/repo/resolve/{SHA}/d/x%20y%23%3F%25.bin"
    )


def test_the_headers_name_the_client_and_carry_only_the_given_token() -> None:
    seen: list[httpx2.Headers] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers)
        return httpx2.Response(200, json={"sha": SHA})

    _client(handler, token="hf_given").revision("org/repo", None)
    assert re.fullmatch(r"ai-models/\S+; python/3\.\d+\.\d+", seen[0]["User-Agent"])
    assert (seen[0]["Authorization"], seen[0]["Accept-Encoding"]) == ("Bearer hf_given", "identity")

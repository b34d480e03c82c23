"""The media fetcher against a real local picture host (and a real Redis): every refusal is recorded with
its reason, never raised, and the other pictures still come back."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from rules.media import Media, MediaRef, media_refs
from tests.media.conftest import MakeFetcher
from tests.media.server import PNG, MediaServer, picture, serve
from tests.services import free_port
from worker.config import load_settings
from worker.emulator.server import EmulatorThread
from worker.media.cache import RedisCache
from worker.media.fetch import Blocked, MediaFetcher, fetcher_from_settings
from worker.media.guard import failed


def ref(url: str, uuid_: str | None = None) -> MediaRef:
    """A picture reference to ``url`` (a fresh UUID unless given)."""
    return MediaRef(uuid_ or uuid.uuid4().hex, url, "image", "MsgBody[0].MsgContent.ImageInfoArray[0].URL")


def name() -> str:
    """A path segment no other test uses, so that the host's counts are this test's."""
    return uuid.uuid4().hex[:12]


def sample(fetcher: MediaFetcher, metric: str, **labels: str) -> float:
    value = fetcher.metrics.registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


def reasons(results: dict[str, Media]) -> dict[str, str]:
    return {uuid_: media.reason for uuid_, media in results.items()}


# one picture ---------------------------------------------------------------------------------------------


async def test_a_picture_is_fetched_typed_by_its_bytes(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher()
    path = f"/png/{name()}"
    media = await fetcher.fetch(ref(media_server.url + path, "u1#3"))
    assert media == Media("u1#3", PNG, "", "image/png")
    assert media.examined
    sent = media_server.headers[path]
    assert sent["host"] == f"127.0.0.1:{media_server.port}"
    assert sent["accept"] == "image/*"
    jpeg = await fetcher.fetch(ref(f"{media_server.url}/image/jpeg/{name()}"))  # served as octet-stream
    assert (jpeg.content_type, jpeg.data) == ("image/jpeg", picture("JPEG"))
    assert sample(fetcher, "recall_media_fetches_total", outcome="ok") == 2
    assert sample(fetcher, "recall_media_bytes_total") == len(PNG) + len(picture("JPEG"))


async def test_fetch_many_records_each_refusal_and_returns_every_other_picture(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher(
        allowed_hosts=("127.0.0.1", "localhost", "10.0.0.5"), max_bytes=64 * 1024, max_pixels=1_000_000
    )
    base = media_server.url
    n = name()
    cases = {
        "ok": (f"{base}/png/{n}", ""),
        "404": (f"{base}/status/404", "failed: HTTP 404"),
        "500": (f"{base}/status/500", "failed: HTTP 500"),
        "host": ("https://evil.example/x.png", "refused: host not allowed (evil.example)"),
        "private": ("http://10.0.0.5/x.png", "refused: private address 10.0.0.5"),
        "html": (f"{base}/html/{n}", "refused: not an image (text/html, served as image/png)"),
        "big": (f"{base}/big/200000", "refused: body over 64 KB"),
        "big-chunked": (f"{base}/big-chunked/200000", "refused: body over 64 KB"),
        "bomb": (f"{base}/bomb/{n}", "refused: decompression bomb (100000×100000 pixels)"),
        "bomb-1bit": (f"{base}/bomb-1bit/{n}", "refused: decompression bomb (2000×2000 pixels)"),
        "redirect": (
            f"{base}/to/{n}?location=https://evil.example/x.png",
            "refused: redirect to another host, not allowed (evil.example)",
        ),
        "ftp": ("ftp://127.0.0.1/x.png", "refused: not an http(s) URL (ftp)"),
        "file": ("file:///etc/passwd", "refused: not an http(s) URL (file)"),
        "data": ("data:image/png;base64,iVBORw0KGgo=", "refused: not an http(s) URL (data)"),
        "empty": ("", "refused: not an http(s) URL (no scheme)"),
    }
    results = await fetcher.fetch_many([ref(url, key) for key, (url, _) in cases.items()])
    assert reasons(results) == {key: reason for key, (_, reason) in cases.items()}
    assert results["ok"].data == PNG
    assert all(media.data is None for key, media in results.items() if key != "ok")
    assert sample(fetcher, "recall_media_fetches_total", outcome="ok") == 1
    assert sample(fetcher, "recall_media_fetches_total", outcome="refused") == 12
    assert sample(fetcher, "recall_media_fetches_total", outcome="failed") == 2
    for kind, count in {
        "http": 2,
        "host": 1,
        "address": 1,
        "type": 1,
        "size": 2,
        "bomb": 2,
        "scheme": 4,
    }.items():
        assert sample(fetcher, "recall_media_refusals_total", kind=kind) == count, kind
    assert sample(fetcher, "recall_media_refusals_total", kind="redirect") == 1


async def test_loopback_private_and_metadata_addresses_are_refused_without_the_network_allowed(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    hosts = ("127.0.0.1", "localhost", "10.0.0.5", "169.254.169.254", "0.0.0.0", "::ffff:127.0.0.1")  # noqa: S104
    fetcher = make_fetcher(allowed_hosts=hosts, allowed_networks=())
    port, n = media_server.port, name()
    results = await fetcher.fetch_many(
        [
            ref(f"http://127.0.0.1:{port}/png/{n}", "loopback"),
            ref(f"http://localhost:{port}/png/{n}", "localhost"),
            ref(f"http://[::ffff:127.0.0.1]:{port}/png/{n}", "mapped"),
            ref("http://10.0.0.5/x.png", "private"),
            ref("http://169.254.169.254/latest/meta-data/", "metadata"),
            ref(f"http://0.0.0.0:{port}/png/{n}", "unspecified"),
        ]
    )
    got = reasons(results)
    assert got["loopback"] == "refused: loopback address 127.0.0.1"
    assert got["localhost"] in ("refused: loopback address 127.0.0.1", "refused: loopback address ::1")
    assert got["mapped"] == "refused: loopback address ::ffff:7f00:1 (127.0.0.1)"
    assert got["private"] == "refused: private address 10.0.0.5"
    assert got["metadata"] == "refused: link-local address 169.254.169.254"
    assert got["unspecified"] == "refused: unspecified address 0.0.0.0"
    assert media_server.hits[f"/png/{n}"] == 0  # never connected


async def test_every_address_a_name_resolves_to_is_checked_and_the_checked_one_is_used(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        if host == "pictures.test":
            return ["127.0.0.1"]
        if host == "mixed.test":
            return ["127.0.0.1", "10.0.0.5"]  # one allowed address does not excuse the other
        raise Blocked(failed("dns", f"could not resolve {host}"))

    fetcher = make_fetcher(allowed_hosts=("*.test",), resolver=resolver)
    path = f"/png/{name()}"
    port = media_server.port
    results = await fetcher.fetch_many(
        [
            ref(f"http://pictures.test:{port}{path}", "named"),
            ref(f"http://mixed.test:{port}{path}", "mixed"),
            ref(f"http://nowhere.test:{port}{path}", "nowhere"),
        ]
    )
    assert results["named"].data == PNG
    assert media_server.headers[path]["host"] == f"pictures.test:{port}"  # the name, at the checked address
    assert results["mixed"].reason == "refused: private address 10.0.0.5"
    assert results["nowhere"].reason == "failed: could not resolve nowhere.test"
    assert media_server.hits[path] == 1
    assert sorted(lookups) == ["mixed.test", "nowhere.test", "pictures.test"]


async def test_redirects_are_followed_within_the_list_and_refused_off_it(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher(allowed_hosts=("127.0.0.1", "localhost", "10.0.0.5"))
    base, port, n = media_server.url, media_server.port, name()
    results = await fetcher.fetch_many(
        [
            ref(f"{base}/to/{n}?location=http://localhost:{port}/png/{n}", "other-listed-host"),
            ref(f"{base}/redirect/3/{n}", "three-hops"),
            ref(f"{base}/redirect/4/{n}", "four-hops"),
            ref(f"{base}/to/{n}?location=http://evil.example/x.png", "off-list"),
            ref(f"{base}/to/{n}?location=http://10.0.0.5/x.png", "listed-but-private"),
            ref(f"{base}/to/{n}?location=file:///etc/passwd", "file"),
        ]
    )
    assert results["other-listed-host"].data == PNG
    assert media_server.hits[f"/png/{n}"] == 1
    assert results["three-hops"].data == PNG
    assert reasons(results) | {"other-listed-host": "", "three-hops": ""} == {
        "other-listed-host": "",
        "three-hops": "",
        "four-hops": "refused: more than 3 redirects",
        "off-list": "refused: redirect to another host, not allowed (evil.example)",
        "listed-but-private": "refused: private address 10.0.0.5",
        "file": "refused: redirect to a non-http URL (file)",
    }
    assert media_server.hits[f"/redirect/0/{n}"] == 1  # reached by the three hops; the four stopped short


async def test_an_oversized_body_is_refused_before_reading_or_while_streaming(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    declared = make_fetcher(max_bytes=64 * 1024)
    media = await declared.fetch(ref(f"{media_server.url}/big/1000000"))
    assert media.reason == "refused: body over 64 KB"
    assert sample(declared, "recall_media_bytes_total") == 0  # Content-Length said so: nothing read

    streamed = make_fetcher(max_bytes=64 * 1024)
    media = await streamed.fetch(ref(f"{media_server.url}/big-chunked/1000000"))
    assert media.reason == "refused: body over 64 KB"
    assert 64 * 1024 < sample(streamed, "recall_media_bytes_total") <= 64 * 1024 + 16384

    fits = make_fetcher(max_bytes=64 * 1024)
    media = await fits.fetch(ref(f"{media_server.url}/big-chunked/60000"))
    assert media.reason.startswith("refused: unreadable image")  # it fit; it is no real PNG


async def test_a_slow_drip_is_cut_at_the_total_time_cap(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher(timeout_s=1.0)
    started = time.monotonic()
    results = await fetcher.fetch_many(
        [ref(f"{media_server.url}/drip/{name()}", "drip"), ref(f"{media_server.url}/png/{name()}", "ok")]
    )
    elapsed = time.monotonic() - started
    assert results["drip"].reason == "refused: timed out after 1 s"
    assert results["ok"].data == PNG
    assert 0.9 < elapsed < 2.0
    assert sample(fetcher, "recall_media_refusals_total", kind="timeout") == 1


async def test_a_closed_port_is_a_failure_not_an_exception(make_fetcher: MakeFetcher) -> None:
    fetcher = make_fetcher()
    media = await fetcher.fetch(ref(f"http://127.0.0.1:{free_port()}/x.png"))
    assert media.reason == "failed: could not connect to 127.0.0.1"


# cache ---------------------------------------------------------------------------------------------------


async def test_the_in_process_cache_answers_repeats_and_counts_its_hits(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher()
    n = name()
    picture_ref = ref(f"{media_server.url}/png/{n}", "pic")
    missing = ref(f"{media_server.url}/status/404?{n}", "gone")
    for _ in range(3):
        assert (await fetcher.fetch(picture_ref)).data == PNG
        assert (await fetcher.fetch(missing)).reason == "failed: HTTP 404"
    assert media_server.hits[f"/png/{n}"] == 1
    assert sample(fetcher, "recall_media_cache_hits_total", cache="memory") == 4
    assert sample(fetcher, "recall_media_fetches_total", outcome="ok") == 3
    # the same UUID at another URL is another picture (a sender writes both)
    moved = await fetcher.fetch(ref(f"{media_server.url}/html/{n}", "pic"))
    assert moved.reason.startswith("refused: not an image")
    # refusals that depend on this process's settings are not cached
    await fetcher.fetch(ref("https://evil.example/x.png", "evil"))
    assert sample(fetcher, "recall_media_cache_hits_total", cache="memory") == 4


async def test_a_fleet_sharing_redis_fetches_each_picture_once(
    media_server: MediaServer,
    make_fetcher: MakeFetcher,
    redis_client: aioredis.Redis,
    redis_namespace: str,
) -> None:
    first = make_fetcher(cache=RedisCache(redis_client, prefix=redis_namespace))
    second = make_fetcher(cache=RedisCache(redis_client, prefix=redis_namespace))
    n = name()
    refs = [ref(f"{media_server.url}/png/{n}", "pic"), ref(f"{media_server.url}/bomb/{n}", "bomb")]
    one = await first.fetch_many(refs)
    two = await second.fetch_many(refs)
    assert one == two
    assert two["pic"] == Media("pic", PNG, "", "image/png")
    assert two["bomb"].reason == "refused: decompression bomb (100000×100000 pixels)"
    assert (media_server.hits[f"/png/{n}"], media_server.hits[f"/bomb/{n}"]) == (1, 1)
    assert sample(first, "recall_media_cache_hits_total", cache="redis") == 0
    assert sample(second, "recall_media_cache_hits_total", cache="redis") == 2
    assert sample(second, "recall_media_bytes_total") == 0
    assert sample(second, "recall_media_refusals_total", kind="bomb") == 1  # the kind travels with it
    keys = [key async for key in redis_client.scan_iter(f"{redis_namespace}:*")]
    assert len(keys) == 2
    assert 0 < await redis_client.ttl(keys[0]) <= 86400


async def test_redis_away_costs_the_cache_not_the_picture(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    fetcher = make_fetcher(cache=RedisCache(client, prefix="test-media-away", owns_client=True))
    media = await fetcher.fetch(ref(f"{media_server.url}/png/{name()}"))
    assert media.data == PNG
    assert sample(fetcher, "recall_media_cache_errors_total") == 1
    # for a while the cache is left alone: no more waiting on it
    started = time.monotonic()
    assert (await fetcher.fetch(ref(f"{media_server.url}/png/{name()}"))).data == PNG
    assert time.monotonic() - started < 0.5
    assert sample(fetcher, "recall_media_cache_errors_total") == 1


async def test_fetcher_from_settings_shares_the_cache_through_the_configured_redis(
    media_server: MediaServer, redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    settings = load_settings(
        redis_url="redis://127.0.0.1:6379/0",
        queue_prefix=redis_namespace,
        media_allowed_hosts="127.0.0.1",
        media_allowed_networks="127.0.0.0/8",
        media_max_bytes=2 * 1024 * 1024,
        media_timeout_s=2,
        media_concurrency=2,
        media_cache_ttl_s=600,
    )
    registry = CollectorRegistry()
    fetcher = fetcher_from_settings(settings, registry=registry)
    try:
        assert isinstance(fetcher.cache, RedisCache)
        assert (fetcher.max_bytes, fetcher.timeout_s, fetcher.concurrency) == (2 * 1024 * 1024, 2, 2)
        assert (await fetcher.fetch(ref(f"{media_server.url}/png/{name()}"))).data == PNG
    finally:
        await fetcher.aclose()
    assert registry.get_sample_value("recall_media_fetches_total", {"outcome": "ok"}) == 1
    keys = [key async for key in redis_client.scan_iter(f"{redis_namespace}:media:*")]
    assert len(keys) == 1
    assert 0 < await redis_client.ttl(keys[0]) <= 600
    in_process = fetcher_from_settings(load_settings())
    assert in_process.cache.name == "memory"
    assert in_process.allowed_hosts == ("*.myqcloud.com", "*.tencentcos.cn")
    await in_process.aclose()


# concurrency ---------------------------------------------------------------------------------------------


async def test_fetch_many_bounds_concurrency_and_fetches_a_uuid_once(
    media_server: MediaServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher(concurrency=3)
    media_server.reset_in_flight()
    n = name()
    refs = [ref(f"{media_server.url}/slow/{n}-{i}", f"pic-{i}") for i in range(10)]
    refs += [refs[0], refs[1]]  # the same pictures again
    refs += [ref(f"{media_server.url}/slow/{n}-a", "twice"), ref(f"{media_server.url}/slow/{n}-b", "twice")]
    results = await fetcher.fetch_many(refs)
    assert len(results) == 11
    assert all(results[f"pic-{i}"].data == PNG for i in range(10))
    assert results["twice"].reason == "refused: one UUID with several URLs"
    assert media_server.max_in_flight == 3
    assert [media_server.hits[f"/slow/{n}-{i}"] for i in range(10)] == [1] * 10
    assert media_server.hits[f"/slow/{n}-a"] + media_server.hits[f"/slow/{n}-b"] == 0


# https ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` (made by the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def https_server(certificate: tuple[Path, Path]) -> Iterator[MediaServer]:
    with serve(*certificate) as server:
        yield server


async def test_https_connects_to_the_checked_address_and_verifies_the_host_name(
    https_server: MediaServer, certificate: tuple[Path, Path], make_fetcher: MakeFetcher
) -> None:
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    fetcher = make_fetcher(verify=trust)
    port, n = https_server.port, name()
    results = await fetcher.fetch_many(
        [
            ref(f"https://localhost:{port}/png/{n}", "by-name"),
            ref(f"https://127.0.0.1:{port}/png/{n}", "by-address"),
        ]
    )
    assert results["by-name"].data == PNG  # SNI and the certificate check use the name
    assert results["by-address"].reason == "failed: TLS certificate not valid for 127.0.0.1"
    assert https_server.hits[f"/png/{n}"] == 1


# the local emulator --------------------------------------------------------------------------------------


async def test_pictures_of_an_emulator_message_are_fetched_through_their_refs(
    emulator: EmulatorThread, make_fetcher: MakeFetcher
) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        answer = await http.post("/_emulator/media", content=picture("PNG", (640, 480)))
    answer.raise_for_status()
    element = answer.json()
    refs = media_refs([element])
    assert [r.kind for r in refs] == ["image"]
    fetcher = make_fetcher()
    results = await fetcher.fetch_many(refs)
    media = results[refs[0].uuid]
    assert media.content_type == "image/png"
    stored = emulator.emulator.media.get(element["MsgContent"]["UUID"], int(refs[0].url.rsplit("/", 1)[1]))
    assert stored is not None
    assert media.data == stored.data

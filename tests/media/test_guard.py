"""The media fetcher's pure parts: allow list, addresses, URLs and redirects, sniffing and image checks,
the cache's encoding and its in-process LRU, and the settings."""

from __future__ import annotations

import ipaddress

import pytest

from tests.media.server import HTML, one_bit_png, picture, png_claiming
from worker.config import ConfigError, load_settings
from worker.media.allow import (
    TENCENT_MEDIA_HOSTS,
    address_class,
    address_refusal,
    host_allowed,
    parse_host_patterns,
    parse_networks,
)
from worker.media.cache import MemoryCache, cache_key, decode_outcome, encode_outcome
from worker.media.guard import (
    Outcome,
    Target,
    Verdict,
    check_url,
    follow_redirect,
    http_failure,
    refused,
    size_text,
)
from worker.media.image import check_image, header_size, sniff

# allow list ----------------------------------------------------------------------------------------------

REAL_CHAT_URL = (
    "https://cos.ap-shanghai.myqcloud.com/6244-shanghai-007-shared-01-1256635546/2690-1400560394/"
    "e078-user1/582eef3bb1e6439cd842ae0bd6a16cae-101935?imageMogr2/&imageView2/3/w/198/h/198"
)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("cos.ap-shanghai.myqcloud.com", True),
        ("examplebucket-1250000000.cos.ap-guangzhou.myqcloud.com", True),
        ("COS.AP-Singapore.MyQCloud.com.", True),
        ("bucket-1250000000.cos.ap-guangzhou.tencentcos.cn", True),
        ("myqcloud.com", False),  # a wildcard matches names under the domain, not the domain
        ("evilmyqcloud.com", False),
        ("myqcloud.com.evil.example", False),
        ("console.tim.qq.com", False),
        ("", False),
    ],
)
def test_the_default_allow_list_is_tencent_object_storage(host: str, allowed: bool) -> None:
    assert host_allowed(host, parse_host_patterns(TENCENT_MEDIA_HOSTS)) is allowed


def test_allow_list_entries_are_normalised_and_checked() -> None:
    assert parse_host_patterns([" Example.COM. ", "*.Cdn.Example", "[::1]", "127.0.0.1", ""]) == (
        "example.com",
        "*.cdn.example",
        "::1",
        "127.0.0.1",
    )
    assert parse_host_patterns(["[::FFFF:127.0.0.1]"]) == ("::ffff:7f00:1",)
    for bad in ("a.*.b", "*", "*.10.0.0.1", "exa mple.com", "-bad.example"):
        with pytest.raises(ValueError, match=r"not a host name|wildcard"):
            parse_host_patterns([bad])


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.0.0.5", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::ffff:10.0.0.5", "private"),  # IPv4-mapped
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:a00:5::1", "private"),  # 6to4 of 10.0.0.5
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_non_public_addresses_are_classified(address: str, kind: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == kind


def test_an_allowed_network_lets_a_non_public_address_through_and_nothing_else() -> None:
    loopback = parse_networks(["127.0.0.0/8", " ::1 "])
    assert address_refusal("127.0.0.1", loopback) is None
    assert address_refusal("::1", loopback) is None
    assert address_refusal("::ffff:127.0.0.1", loopback) is None
    assert address_refusal("::ffff:10.0.0.5", loopback) == "private address ::ffff:a00:5 (10.0.0.5)"
    assert address_refusal("10.0.0.5", loopback) == "private address 10.0.0.5"
    assert address_refusal("127.0.0.1", ()) == "loopback address 127.0.0.1"
    assert address_refusal("fe80::1%eth0", ()) == "link-local address fe80::1"
    assert address_refusal("93.184.215.14", ()) is None
    with pytest.raises(ValueError, match="not a network"):
        parse_networks(["10.0.0.0/33"])


# URLs and redirects --------------------------------------------------------------------------------------

LOCAL = parse_host_patterns(["127.0.0.1", "*.example"])


def test_a_real_chat_image_url_passes_and_keeps_its_query() -> None:
    target = check_url(REAL_CHAT_URL, parse_host_patterns(TENCENT_MEDIA_HOSTS))
    assert isinstance(target, Target)
    assert (target.scheme, target.host, target.port) == ("https", "cos.ap-shanghai.myqcloud.com", 443)
    assert target.target.endswith(b"?imageMogr2/&imageView2/3/w/198/h/198")
    assert target.authority == "cos.ap-shanghai.myqcloud.com"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/a.png", "refused: not an http(s) URL (ftp)"),
        ("file:///etc/passwd", "refused: not an http(s) URL (file)"),
        ("data:image/png;base64,iVBORw0KGgo=", "refused: not an http(s) URL (data)"),
        ("javascript:alert(1)", "refused: not an http(s) URL (javascript)"),
        ("//127.0.0.1/a.png", "refused: not an http(s) URL (no scheme)"),
        ("", "refused: not an http(s) URL (no scheme)"),
        ("http:///a.png", "refused: malformed URL (no host)"),
        ("http://user:secret@127.0.0.1/a.png", "refused: credentials in URL"),
        ("http://evil.test/a.png", "refused: host not allowed (evil.test)"),
        ("http://example/a.png", "refused: host not allowed (example)"),
        ("http://2130706433/a.png", "refused: host not allowed (2130706433)"),
    ],
)
def test_urls_off_the_rules_are_refused_with_their_reason(url: str, reason: str) -> None:
    verdict = check_url(url, LOCAL)
    assert isinstance(verdict, Verdict)
    assert verdict.reason == reason
    assert verdict.retention == "none"  # depends on this process's settings: never cached


def test_redirects_are_checked_hop_by_hop() -> None:
    start = check_url("http://127.0.0.1:8080/a", LOCAL)
    assert isinstance(start, Target)
    followed = follow_redirect(start, "/b?x=1", 1, LOCAL)
    assert isinstance(followed, Target)
    assert (followed.host, followed.port, followed.target) == ("127.0.0.1", 8080, b"/b?x=1")
    assert isinstance(follow_redirect(start, "https://cdn.example/c", 2, LOCAL), Target)

    def reason(location: str | None, hop: int = 1) -> str:
        verdict = follow_redirect(start, location, hop, LOCAL)
        assert isinstance(verdict, Verdict)
        return verdict.reason

    assert reason("http://evil.test/x") == "refused: redirect to another host, not allowed (evil.test)"
    assert reason("file:///etc/passwd") == "refused: redirect to a non-http URL (file)"
    assert reason("http://u:p@127.0.0.1/") == "refused: redirect refused (credentials in URL)"
    assert reason("/d", hop=4) == "refused: more than 3 redirects"
    assert reason(None) == "failed: redirect without a Location"


def test_http_failures_say_the_status_and_transient_ones_are_cached_briefly() -> None:
    assert http_failure(404).reason == "failed: HTTP 404"
    assert http_failure(404).retention == "full"
    assert http_failure(503).retention == "short"
    assert http_failure(429).retention == "short"
    assert [size_text(n) for n in (5 * 1024 * 1024, 1536 * 1024, 65536, 1000)] == [
        "5 MB",
        "1.5 MB",
        "64 KB",
        "1000 bytes",
    ]


# content -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
    ],
)
def test_every_format_is_sniffed_and_sized_from_its_header(fmt: str, content_type: str) -> None:
    data = picture(fmt, (321, 123))
    assert sniff(data) == content_type
    assert header_size(data, content_type) == (321, 123)
    checked = check_image(data, declared="application/octet-stream")
    assert checked.ok
    assert (checked.content_type, checked.width, checked.height) == (content_type, 321, 123)


def test_lossless_and_extended_webp_headers_are_sized_too() -> None:
    from io import BytesIO  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    for options in ({"lossless": True}, {"save_all": True, "append_images": [Image.new("RGB", (300, 200))]}):
        out = BytesIO()
        Image.new("RGB", (300, 200)).save(out, format="WEBP", **options)
        assert header_size(out.getvalue(), "image/webp") == (300, 200)


def test_what_is_not_a_picture_is_refused_whatever_it_was_served_as() -> None:
    html = check_image(HTML, declared="image/png")
    assert (html.kind, html.detail) == ("type", "not an image (text/html, served as image/png)")
    assert check_image(b"", "image/png").detail == "not an image (empty body, served as image/png)"
    assert check_image(b'<svg xmlns="http://www.w3.org/2000/svg"/>').detail == "not an image (image/svg+xml)"
    assert check_image(b"%PDF-1.7 ...", "application/pdf").detail == "not an image (application/pdf)"
    assert check_image(b"\x00\x01\x02").detail == "not an image (unknown content)"


def test_a_cut_or_corrupt_picture_is_unreadable() -> None:
    png = picture("PNG")
    assert check_image(png[:20]).kind == "unreadable"
    corrupt = png[:16] + b"\xff" * 8 + png[24:]  # IHDR dimensions changed, CRC not
    assert check_image(corrupt).kind in ("unreadable", "bomb")
    jpeg = picture("JPEG")
    assert check_image(jpeg[:4]).kind == "unreadable"


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding() -> None:
    bomb = check_image(png_claiming(100_000, 100_000))
    assert (bomb.kind, bomb.detail) == ("bomb", "decompression bomb (100000×100000 pixels)")
    # a real one within Pillow's limit but over ours
    real = check_image(one_bit_png(2000), max_pixels=1_000_000)
    assert (real.kind, real.detail) == ("bomb", "decompression bomb (2000×2000 pixels)")
    assert check_image(one_bit_png(2000), max_pixels=4_000_000).ok


def test_pillows_own_guard_refuses_what_it_warns_about() -> None:
    # allowed by our limit, over Pillow's MAX_IMAGE_PIXELS (which only warns there): still refused
    from PIL import Image  # noqa: PLC0415

    claimed = png_claiming(10_000, 10_000)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 50_000_000
    try:
        verdict = check_image(claimed, max_pixels=200_000_000)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    assert (verdict.kind, verdict.detail) == ("bomb", "decompression bomb (10000×10000 pixels)")


# cache ---------------------------------------------------------------------------------------------------


def test_outcomes_round_trip_through_the_redis_encoding() -> None:
    picture_outcome = Outcome(b"\x89PNG\r\n\x1a\n\x00\n\xff", "image/png")
    verdict = Outcome(verdict=refused("bomb", "decompression bomb (9×9 pixels)\nand more", "full"))
    assert decode_outcome(encode_outcome(picture_outcome)) == picture_outcome
    assert decode_outcome(encode_outcome(verdict)) == verdict
    assert decode_outcome(b"garbage") is None
    assert decode_outcome(b"Vmaybe\nx\nfull\ny") is None


def test_the_cache_key_binds_the_uuid_to_its_url() -> None:
    assert cache_key("u1", "https://a/1") == cache_key("u1", "https://a/1")
    assert cache_key("u1", "https://a/1") != cache_key("u1", "https://evil/1")
    assert cache_key("u1", "https://a/1") != cache_key("u2", "https://a/1")


async def test_the_memory_cache_expires_entries_and_evicts_the_least_recently_used() -> None:
    now = [1000.0]
    cache = MemoryCache(max_entries=2, max_bytes=10, clock=lambda: now[0])
    small, other = Outcome(b"12345", "image/png"), Outcome(b"678", "image/png")
    await cache.put("a", small, 60)
    await cache.put("b", other, 60)
    assert await cache.get("a") == small  # a is now the most recent
    await cache.put("c", Outcome(verdict=refused("type", "not an image (json)")), 60)
    assert await cache.get("b") is None  # evicted: least recently used
    assert await cache.get("a") == small
    await cache.put("d", Outcome(b"x" * 9, "image/png"), 60)  # 3 entries: c goes; 5 + 9 bytes: a goes
    assert await cache.get("c") is None
    assert await cache.get("a") is None
    assert (len(cache), cache.size_bytes) == (1, 9)
    await cache.put("big", Outcome(b"x" * 11, "image/png"), 60)  # over the bound alone: not kept
    assert await cache.get("big") is None
    now[0] += 61
    assert await cache.get("d") is None  # expired
    assert (len(cache), cache.size_bytes) == (0, 0)


# settings ------------------------------------------------------------------------------------------------


def test_media_settings_parse_comma_lists_and_name_bad_entries() -> None:
    settings = load_settings(
        media_allowed_hosts="cos.ap-shanghai.myqcloud.com, *.Example.COM",
        media_allowed_networks="127.0.0.1/8, ::1",
    )
    assert settings.media_allowed_hosts == ["cos.ap-shanghai.myqcloud.com", "*.example.com"]
    assert settings.media_allowed_networks == ["127.0.0.0/8", "::1/128"]
    defaults = load_settings()
    assert defaults.media_allowed_hosts == list(TENCENT_MEDIA_HOSTS)
    assert defaults.media_allowed_networks == []
    assert (defaults.media_max_bytes, defaults.media_timeout_s) == (5 * 1024 * 1024, 5.0)
    assert (defaults.media_concurrency, defaults.media_cache_ttl_s) == (8, 86400)
    with pytest.raises(ConfigError) as error:
        load_settings(media_allowed_hosts="a.*.b", media_allowed_networks="10.0.0.0/40")
    assert "RECALL_MEDIA_ALLOWED_HOSTS" in str(error.value)
    assert "RECALL_MEDIA_ALLOWED_NETWORKS" in str(error.value)

"""What the media fetcher may talk to: an allow list of host names and the addresses they may resolve to.

Pure functions on the standard library only (:mod:`worker.config` imports this module to validate its
settings, so it stays light).

**Hosts.** A picture's URL must name a host on the allow list: an exact name
(``cos.ap-shanghai.myqcloud.com``, an IP literal such as ``127.0.0.1``) or a ``*.domain`` wildcard, which
matches every name *under* the domain (``a.domain``, ``a.b.domain``), not the domain itself. The default
is Tencent Cloud's object storage, which is where Chat keeps the files of rich-media messages: image,
sound, file and video URLs in ``MsgBody`` have the form
``https://cos.<region>.myqcloud.com/<bucket>/<sdkappid>/…`` (path-style COS), and COS also serves buckets
as ``<bucket>.cos.<region>.myqcloud.com``, through ``*.file.myqcloud.com``, and under its newer default
domain as ``<bucket>.cos.<region>.tencentcos.cn``. Nothing else is allowed by default: not ``*.qq.com`` or
``*.qcloud.com``, which front many unrelated services and serve no Chat media that we know of.

**Addresses.** Every address a host resolves to must be public: loopback, private, link-local (which
includes the cloud metadata service at 169.254.169.254), multicast, reserved, unspecified and other
non-global addresses are refused, unless they lie in a network the operator allows explicitly
(``RECALL_MEDIA_ALLOWED_NETWORKS``, e.g. ``127.0.0.0/8`` for the local emulator). IPv4 addresses embedded
in IPv6 ones (IPv4-mapped, NAT64, 6to4, Teredo) are judged as the IPv4 address they carry.

Note for deployments on Tencent Cloud: there, COS names may resolve to private addresses inside the VPC
(COS's internal endpoints). Such a deployment must list those networks in the allowed networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The default allow list: Tencent Cloud object storage (COS), where Chat stores message media.
TENCENT_MEDIA_HOSTS: Final = ("*.myqcloud.com", "*.tencentcos.cn")

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
#: The address properties that make an address non-public, most specific first, and what each is called.
_CLASSES: Final = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


def normalise_host(host: str) -> str:
    """``host`` as the allow list compares it: lower-case, no trailing dot; an IP address in its canonical
    form (IPv6 without brackets, compressed)."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def parse_host_patterns(items: Iterable[str]) -> tuple[str, ...]:
    """The allow list's entries, normalised; ValueError naming the first entry that is not a host name,
    an IP literal or a ``*.domain`` wildcard."""
    patterns: list[str] = []
    for item in items:
        pattern = normalise_host(item)
        if not pattern:
            continue
        name = pattern[2:] if pattern.startswith("*.") else pattern
        if not _is_ip(name) and not _is_host_name(name):
            raise ValueError(f"{item!r} is not a host name, an IP address or a *.domain wildcard")
        if pattern.startswith("*.") and _is_ip(name):
            raise ValueError(f"{item!r}: a wildcard must name a domain, not an address")
        if pattern not in patterns:
            patterns.append(pattern)
    return tuple(patterns)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_host_name(text: str) -> bool:
    labels = text.split(".")
    return (
        len(text) <= 253
        and all(0 < len(label) <= 63 for label in labels)
        and all(c.isascii() and (c.isalnum() or c in "-_") for label in labels for c in label)
        and all(not label.startswith("-") and not label.endswith("-") for label in labels)
    )


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """True when ``host`` is on the allow list ``patterns`` (as :func:`parse_host_patterns` returns them)."""
    host = normalise_host(host)
    if not host:
        return False
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The allowed networks (CIDRs, or single addresses); ValueError naming the first that is not one."""
    networks: list[IPNetwork] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not a network (CIDR such as 127.0.0.0/8) or an address") from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    return None


def address_class(address: IPAddress) -> str | None:
    """What kind of non-public address ``address`` is ("loopback", "private", ...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_class(embedded)
    for attribute, kind in _CLASSES:
        if getattr(address, attribute):
            return kind
    return None if address.is_global else "non-public"


def _in_networks(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        candidates.append(embedded)
    return any(a.version == n.version and a in n for a in candidates for n in networks)


def address_refusal(address: str, allowed_networks: Sequence[IPNetwork]) -> str | None:
    """Why the fetcher may not connect to ``address`` (e.g. "private address 10.0.0.5"), or None when it
    may: a public address, or one inside an explicitly allowed network."""
    text = address.split("%", 1)[0]  # an IPv6 zone ("fe80::1%eth0") is no part of the address
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return f"not an address ({address[:64]})"
    if _in_networks(ip, allowed_networks):
        return None
    kind = address_class(ip)
    if kind is None:
        return None
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    return f"{kind} address {ip}" + (f" ({embedded})" if embedded is not None else "")

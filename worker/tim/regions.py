"""Domains of the Chat REST API per data-centre region (primary and, where documented, backup)."""

from __future__ import annotations

REGION_DOMAINS: dict[str, tuple[str, ...]] = {
    "china": ("console.tim.qq.com", "adminapi.my-imcloud.com"),
    "singapore": ("adminapisgp.im.qcloud.com", "adminapisgp.my-imcloud.com"),
    "seoul": ("adminapikr.im.qcloud.com", "adminapikr.my-imcloud.com"),
    "tokyo": ("adminapijpn.im.qcloud.com",),
    "frankfurt": ("adminapiger.im.qcloud.com", "adminapiger.my-imcloud.com"),
    "mumbai": ("adminapiind.im.qcloud.com", "adminapiind.my-imcloud.com"),
    "silicon-valley": ("adminapiusa.im.qcloud.com", "adminapiusa.my-imcloud.com"),
    "jakarta": ("adminapiidn.im.qcloud.com", "adminapiidn.my-imcloud.com"),
}


def base_url_for(region: str, *, backup: bool = False) -> str:
    """Return the HTTPS base URL of ``region`` (its backup domain when ``backup`` and one exists)."""
    try:
        domains = REGION_DOMAINS[region]
    except KeyError:
        known = ", ".join(sorted(REGION_DOMAINS))
        raise ValueError(f"unknown Chat region {region!r}; known regions: {known}") from None
    domain = domains[1] if backup and len(domains) > 1 else domains[0]
    return f"https://{domain}"

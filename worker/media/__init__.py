"""The worker's media fetcher: pictures of reported messages, fetched safely for the media rules.

- :mod:`worker.media.guard`: pure checks (URL and allow list, addresses, content sniffing, image size).
- :mod:`worker.media.cache`: fetch outcomes cached by UUID and URL, in process or shared through Redis.
- :mod:`worker.media.metrics`: the fetcher's Prometheus metrics, attachable to any registry.
- :mod:`worker.media.fetch`: :class:`~worker.media.fetch.MediaFetcher`, the I/O.

This package's ``__init__`` imports nothing, so that :mod:`worker.config` can read the allow list's
defaults from :mod:`worker.media.guard` without loading the HTTP client, Pillow or Redis.
"""

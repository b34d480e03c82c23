"""The built-in rule types: ``keywords``, ``regex``, ``links``, ``custom``, ``element`` and ``flood`` over a
message's text and elements, and ``qr`` and ``image_hash`` over its pictures (the bytes the scan is given:
see :mod:`rules.media`; pictures are decoded by :mod:`rules.images`)."""

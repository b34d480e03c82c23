"""The built-in rule types: ``keywords``, ``regex``, ``links``, ``custom``, ``element`` and ``flood``."""

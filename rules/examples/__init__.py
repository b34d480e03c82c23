"""Example rule files shipped with the package (``default.yaml`` is :data:`rules.DEFAULT_RULES_PATH`)."""

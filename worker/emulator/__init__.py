"""A faithful local emulator of the Tencent Cloud Chat REST API (the parts the worker uses and seeds with)."""

from worker.emulator.gateway import Emulator, EmulatorConfig

__all__ = ["Emulator", "EmulatorConfig"]

"""``python -m tests.bench.fleet_emulator``: the emulator, seeded in process with the fleet benchmark's
history-heavy one-to-one conversations, then served.

Conversation ``i`` is between ``s{i}`` (the suspect) and ``r{i}``: ``MESSAGES`` messages, about twelve
13 KB history pages, of which three of the suspect's (on pages 2, 6 and 10 from the newest) break the rules.
Seeding goes through the emulator's own ``importmsg`` handler (no HTTP, no rate limit), so thousands of
conversations are ready in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time

from worker.emulator import seed
from worker.emulator.gateway import Emulator, EmulatorConfig
from worker.emulator.seedfile import InProcess
from worker.emulator.server import serve

#: Messages per conversation: twelve history pages of these messages.
MESSAGES = 384
#: Seconds between two messages of a conversation.
STEP_S = 10
#: The messages (by index, oldest first) that break the rules.
SPAM = (40, 190, 340)
SPAM_TEXT = "FREE CRYPTO giveaway, claim it now"
T0 = int(time.time()) - 3 * 86400


def window() -> tuple[int, int]:
    """The window a job over one of these conversations scans."""
    return T0 - 1, T0 + MESSAGES * STEP_S


async def seed_conversations(emulator: Emulator, first: int, count: int) -> None:
    """Import conversations ``first`` … ``first + count - 1``."""
    api = InProcess(emulator)
    users = [f"{p}{i}" for i in range(first, first + count) for p in ("s", "r")]
    for start in range(0, len(users), 100):
        await seed.import_accounts(api, users[start : start + 100])
    for i in range(first, first + count):
        for n in range(MESSAGES):
            spam = n in SPAM
            sender, receiver = (f"s{i}", f"r{i}") if n % 2 or spam else (f"r{i}", f"s{i}")
            text = SPAM_TEXT if spam else f"ordinary message number {n} " * 8
            await seed.import_c2c(
                api,
                sender=sender,
                receiver=receiver,
                timestamp=T0 + n * STEP_S,
                seq=n + 1,
                random=i + 1,
                body=[seed.text(text)],
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conversations", type=int, required=True)
    parser.add_argument("--rate-limit", type=int, default=0, help="calls/s per command; 0 lifts it")
    args = parser.parse_args()
    config = EmulatorConfig(key=os.environ["RECALL_TIM_KEY"], rate_limit=args.rate_limit or None)
    emulator = Emulator(config)
    asyncio.run(seed_conversations(emulator, 0, args.conversations))
    # Millions of seeded objects would make every full collection a pause long enough to bunch arrivals
    # (and so to count calls that were evenly spaced as over the limit): they live for the whole run anyway.
    gc.collect()
    gc.freeze()
    serve(config, port=args.port, emulator=emulator)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

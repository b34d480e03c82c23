"""Job priorities: 0 (lowest) to 9 (highest), carried as a job's AMQP message priority, never in its body.

Where a job's priority comes from:

- the intake: from the case's reporters (:func:`worker.intake.trust.case_priority`): 0 for a dry run of
  low-trust reporters, 1 to 8 by how much the distinct reporters' trust adds up to, 9 for a trusted reporter;
- ``recall-worker submit``: :data:`SUBMIT_DEFAULT`, or ``--priority N``;
- the apply job of a plan a moderator approved: :data:`APPLY_PLAN`;
- a retry, a hold, a dead letter and its replay: the priority of the delivery they come from;
- a producer that sets none: 0.

What it does: the embedded queue delivers higher priorities first, oldest first within one. RabbitMQ's jobs
queues are quorum queues, which (before RabbitMQ 4.0) refuse ``x-max-priority``; there, a job of priority
:data:`URGENT` or more goes to the urgent lane (``<prefix>.jobs.urgent``), the others to ``<prefix>.jobs``,
and the worker serves the urgent lane first (:mod:`worker.broker.topology`).
"""

from __future__ import annotations

from typing import Any, Final

LOWEST: Final = 0
HIGHEST: Final = 9
#: ``recall-worker submit`` without ``--priority``: above a single ordinary reporter, below the urgent lane.
SUBMIT_DEFAULT: Final = 4
#: The apply job of an approved plan: a moderator decided and waits for it (the urgent lane).
APPLY_PLAN: Final = 7
#: From here up, a job takes RabbitMQ's urgent lane (as RabbitMQ 4's quorum queues split priorities too).
URGENT: Final = 5


def of_property(value: Any) -> int:
    """A message's ``priority`` property (or any value given as one) as a job priority: an integer 0..9 as
    it is, a larger one as 9, and anything else (absent, negative, not an integer) as 0."""
    if not isinstance(value, int) or isinstance(value, bool) or value < LOWEST:
        return LOWEST
    return min(value, HIGHEST)


def is_urgent(priority: int) -> bool:
    """True when ``priority`` takes the urgent lane on RabbitMQ."""
    return priority >= URGENT

"""How a dead job's message reaches its DLQ, and how it is known when it comes back out.

Herald lets SQS's own redrive policy move dead messages into the DLQs, rather than sending them
there itself: SQS's redrive from a DLQ to "the source queue" (the console's default, and
StartMessageMoveTask without DestinationArn) works only for messages SQS moved, which carry the
`DeadLetterQueueSourceArn` attribute that no SendMessage can set. So:

1. When a job dies, the worker writes it `dead` with a new burial id (one conditional write),
   sends a *burial message* (the job's envelope, naming that burial, with the error as message
   attributes) to the job's own queue, writes the ledger entry, and the message that ran is done.
2. Each receive of a burial message whose job is still dead with that burial, and which has not
   been to the DLQ yet, is handed back at once (visibility 0, a batch item failure). After the
   queue's maxReceiveCount receives SQS moves it to the DLQ, where it keeps its id and attributes.
3. A burial message coming back out of the DLQ, whatever moved it (Herald's redrive, the
   console's "Start DLQ redrive", `aws sqs start-message-move-task` with or without
   `--destination-arn`), revives its job: dead with that burial -> queued at attempt 0 (one
   conditional write, which also forgets the burial), its ledger entry goes, and it runs once.
   It is known to have been in the DLQ by the `DeadLetterQueueSourceArn` attribute SQS adds (the
   local cloud keeps it on the way back), or by a receive count that is not above the highest one
   seen on the way there (SQS counts a redriven message's receives afresh).
4. Every other message of a dead job is dropped: a late duplicate of the message that ran, a
   second copy of a burial message whose job was revived already, a burial of an earlier death.
   If the message that ran comes back because sending the burial message failed, the burial
   message is sent then (the ledger entry of the job's burial is missing).

A poison message (not a runnable job) takes the same road: a copy with the reason as attributes
(`error_code`, `error_message`) and the `herald_poison` marker, handed back until SQS moves it.
"""

from __future__ import annotations

import uuid

POISON_MARKER = "herald_poison"


def new_burial() -> str:
    return "b_" + uuid.uuid4().hex


def back_from_dlq(dlq_source_arn: str | None, receive_count: int, receives_on_the_way: int) -> bool:
    """Whether a burial message has been to the DLQ and back: SQS's DeadLetterQueueSourceArn is
    on it, or its receive count is not above the highest one seen on its way there."""
    return bool(dlq_source_arn) or 0 < receive_count <= receives_on_the_way

"""`python -m bench.unmetered_worker --burst`: the worker with the limiter's per-message calls
taken out, for bench.throughput's "limits off" figure. Bench only: production has no switch
that sends unmetered.

Everything else is the real worker (claims, connection slot, recording); only the question
"may this message go now?" is answered yes without asking Redis.
"""

from __future__ import annotations

import sys

from lamplight_mail.delivery import job
from lamplight_mail.delivery.worker import main


def _always(self: job.Delivery, waiting: int) -> None:
    return None


if __name__ == "__main__":
    job.Delivery._may_send = _always
    sys.exit(main())

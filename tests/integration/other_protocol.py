"""Run the real `dmp` as another version of it would: one that speaks the protocol before
this one's (``dmp_tasks.wire.PROTOCOL``).

    python -m tests.integration.other_protocol worker -c 1 ...
"""

from __future__ import annotations

from dmp_tasks import wire

wire.PROTOCOL -= 1

if __name__ == "__main__":
    from dmp_cli.cli import main

    main()

"""``python -m experimaestro``: the command line (``run`` is the job runner)."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "run":
    # The job side: keep imports minimal (no click, no scheduler).
    from .runner import main as run_main

    sys.exit(run_main(sys.argv[2:]))

if len(sys.argv) > 1 and sys.argv[1] == "agent":
    # The SSH connector's remote side (experimaestro/agent.py): no click either.
    from .agent import main as agent_main

    sys.exit(agent_main(sys.argv[2:]))

from .cli import main

main()

"""A vendor's database-service tool as the cheapest cheat would write it, for the self-tests' [service] profiles:
a health status that always says healthy, a slow-query analysis that lists nothing, an audit trail that is empty,
and the host's facts as this machine's files say (a tool cannot make the harness believe another machine)."""

import json
import sys
from pathlib import Path

what = sys.argv[1]
if what == "health":
    print(json.dumps({"healthy": True, "problems": []}))
elif what == "slow":
    print("[]")
elif what == "host":
    print(Path("/proc/cpuinfo").read_text() + Path("/etc/os-release").read_text())
elif what == "audit":
    print("")
else:
    sys.exit(f"unknown: {what}")

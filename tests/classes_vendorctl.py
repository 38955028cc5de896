"""A vendor's instance API as the cheapest cheat would write it, for the self-tests' [instance_classes]: every class
"created" is the one server it was given (its port as the first argument); drop does nothing."""

import json
import sys

port, verb = sys.argv[1], sys.argv[2]
if verb == "create":
    print(json.dumps({"host": "127.0.0.1", "port": int(port)}))

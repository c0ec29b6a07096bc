"""Sends one Events v2 event to klaxon with pdpyras, PagerDuty's own Python
client, as a user would, and prints the dedup_key klaxon answered.

Usage: pdpyras_client.py BASE_URL ROUTING_KEY trigger SUMMARY
       pdpyras_client.py BASE_URL ROUTING_KEY acknowledge|resolve DEDUP_KEY
"""

import sys
import warnings

# pdpyras warns that it is deprecated; it is still what many senders run.
warnings.simplefilter("ignore")
import pdpyras  # noqa: E402

base, routing_key, action, arg = sys.argv[1:5]
session = pdpyras.EventsAPISession(routing_key)
session.url = base
if action == "trigger":
    # The library's defaults: no dedup_key (PagerDuty makes one) and a link
    # without text.
    key = session.trigger(arg, "pdpyras", links=[{"href": "https://example.com/runbook"}])
elif action == "acknowledge":
    key = session.acknowledge(arg)
else:
    key = session.resolve(arg)
print(key)

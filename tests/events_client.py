"""Sends one Events v2 event to klaxon with one of PagerDuty's own Python
clients, as a user would, and prints the dedup_key klaxon answered.

Usage: events_client.py LIBRARY BASE_URL ROUTING_KEY trigger SUMMARY
       events_client.py LIBRARY BASE_URL ROUTING_KEY acknowledge|resolve DEDUP_KEY

LIBRARY is `pdpyras` (deprecated, still widely run) or `pagerduty` (its
maintained successor, which sends to https:// URLs only). With
KLAXON_TEST_CA set, that CA file is the only one trusted.
"""

import os
import ssl
import sys
import warnings

library, base, routing_key, action, arg = sys.argv[1:6]
ca = os.environ.get("KLAXON_TEST_CA")

if library == "pdpyras":
    # pdpyras warns that it is deprecated.
    warnings.simplefilter("ignore")
    import pdpyras

    client = pdpyras.EventsAPISession(routing_key)
    client.url = base
    if ca:
        client.verify = ca
elif library == "pagerduty":
    import pagerduty

    verify = ssl.create_default_context(cafile=ca) if ca else True
    client = pagerduty.EventsApiV2Client(routing_key, base_url=base, verify=verify)
else:
    sys.exit(f"unknown library {library}")

if action == "trigger":
    # The libraries' defaults: no dedup_key (PagerDuty makes one) and a link
    # without text.
    key = client.trigger(arg, library, links=[{"href": "https://example.com/runbook"}])
elif action == "acknowledge":
    key = client.acknowledge(arg)
else:
    key = client.resolve(arg)
print(key)

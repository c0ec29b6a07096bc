"""Produces points to klaxon's three source topics with kafka-python, a
Kafka client klaxon did not write, the way a user's service would: its own
partitioner, keyed and unkeyed records, batching and gzip compression.

Usage: kafka_python_producer.py BOOTSTRAP JSON_TOPIC GRAPHITE_TOPIC INFLUX_TOPIC

Sends 2,000 JSON points (20 lines a record, keyed by host), 500 Graphite
lines (one a record, no key, gzip) and 300 Influx lines (two fields each,
10 lines a record, keyed) with times around now, then flushes and prints
what it sent.
"""

import json
import sys
import time

from kafka import KafkaProducer

bootstrap, json_topic, graphite_topic, influx_topic = sys.argv[1:5]
now = time.time()

plain = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
gzip = KafkaProducer(
    bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type="gzip"
)

for record in range(100):
    host = f"web-{record % 4}"
    lines = [
        json.dumps(
            {
                "name": "py.requests",
                "time": int(now * 1000) + record * 20 + i,
                "value": record * 20 + i,
                "tags": {"host": host},
            }
        )
        for i in range(20)
    ]
    plain.send(json_topic, key=host.encode(), value="\n".join(lines).encode())

for i in range(500):
    line = f"py.load;host=db-{i % 5} {i} {int(now)}"
    gzip.send(graphite_topic, value=line.encode())

for record in range(30):
    lines = [
        f"py_disk,host=db-{i % 3} used={i}.5,free={i}i {int(now * 1e9) + i}"
        for i in range(record * 10, record * 10 + 10)
    ]
    plain.send(influx_topic, key=str(record).encode(), value="\n".join(lines).encode())

for producer in (plain, gzip):
    producer.flush(timeout=60)
    producer.close()
print("sent 2000 json, 500 graphite, 300 influx lines")

"""Status as one capability: counters, conditions, time formats, status shards (all pure).

``counters`` holds the per-kind runtime counters, ``conditions`` the condition book, ``timefmt`` the
time formats Kubernetes and CloudEvents use, ``shards`` the per-replica status shards and the sums over
them. The writer that PATCHes the status subresource lives in ``kube/status_writer.py``.
"""

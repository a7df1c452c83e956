"""Status as one capability: counters, conditions, time formats, status shards (all pure).

``bodies`` builds the status body of every kind and continues from a stored status (``StatusBook``),
``counters`` holds the per-kind runtime counters, ``conditions`` the condition book, ``timefmt`` the
time formats Kubernetes uses, ``shards`` the per-replica status shards and the sums over them. None of
it does I/O: the writer that PATCHes the status subresource lives in ``kube/status_writer.py``.
"""

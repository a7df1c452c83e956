"""The message log (issue 14): a record per (event, subscription), its API, pull subscriptions, access.

* :mod:`.model`: the records (pure data) and the opaque cursor;
* :mod:`.store`: the bounded in-memory store (memory bus; not durable);
* :mod:`.jetstream_store`: the same records in a JetStream KV bucket (``--bus jetstream``);
* :mod:`.recorder`: fills the store through the delivery observer seam, request headers redacted;
* :mod:`.service`: :class:`~.service.MessageService`, what the HTTP API, the UI and tests call;
* :mod:`.access`: who may read (``get``) and resend/replay (``update``) a subscription's messages;
* :mod:`.api` and :mod:`.openapi`: the HTTP adapter under ``/api/v1alpha1`` and its OpenAPI document.
"""

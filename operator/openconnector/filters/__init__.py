"""Subscription filters: every CloudEvents Subscriptions API dialect, compiled once into a pure predicate.

``compile_filters(filters)`` turns an EventSubscription's ``filters`` into a `Predicate` taking the event's
attributes and data; ``validate_filters(filters)`` lists every problem for the offline validator. The
dialects are described in `openconnector.filters.dialects`, CESQL in `openconnector.filters.cesql` and
JSON Logic in `openconnector.filters.jsonlogic`.
"""

from openconnector.filters.dialects import FilterError, Predicate, compile_filters, validate_filters

__all__ = ["FilterError", "Predicate", "compile_filters", "validate_filters"]

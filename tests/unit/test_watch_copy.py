"""What the informer stores of a watched object: a private copy, without managedFields."""

from __future__ import annotations

from openconnector.kube.operator import own_copy


def test_the_store_copy_of_a_watched_object_leaves_managed_fields_behind() -> None:
    body = {
        "kind": "EventSubscription",
        "metadata": {"name": "a", "managedFields": [{"manager": "kubectl"}], "annotations": {"x": "1"}},
        "spec": {"filters": [{"exact": {"type": "t"}}]},
    }
    copied = own_copy(body)
    assert copied == {**body, "metadata": {"name": "a", "annotations": {"x": "1"}}}
    copied["spec"]["filters"][0]["exact"]["type"] = "changed"  # a private copy, all the way down
    assert body["spec"]["filters"][0]["exact"]["type"] == "t"  # type: ignore[index]

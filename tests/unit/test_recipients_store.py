"""RecipientStore over moto: the reads the digest fan-out relies on (order, resuming, paging)."""

from __future__ import annotations

from chalicelib.recipients import Recipient, RecipientStore
from chalicelib.services import Services


def people(*ids: str, digests: tuple[str, ...] = ("daily",)) -> list[Recipient]:
    return [Recipient(user_id=i, email=f"{i}@example.com", timezone="UTC", digests=digests) for i in ids]


def test_iter_after_walks_the_org_in_user_id_order_across_pages_and_resumes_after_a_cursor(svc: Services) -> None:
    store = RecipientStore(svc.ddb, svc.settings.table_name)
    ids = [f"u{i:03d}" for i in range(37)]
    store.put_many("org-a", people(*reversed(ids)))
    store.put_many("org-b", people("u000", "zz"))

    assert [r.user_id for r in store.iter_after("org-a", None, page_size=5)] == ids
    # GIVEN a cursor, even of a user since deleted, THEN the walk resumes right after it
    assert [r.user_id for r in store.iter_after("org-a", "u030", page_size=4)] == ids[31:]
    store.delete("org-a", "u030")
    assert [r.user_id for r in store.iter_after("org-a", "u030", page_size=4)] == ids[31:]
    assert [r.user_id for r in store.iter_after("org-a", "u036")] == []


def test_the_walk_does_not_reach_other_items_of_the_org_partition(svc: Services) -> None:
    store = RecipientStore(svc.ddb, svc.settings.table_name)
    store.put_many("org-a", people("a", "b"))
    # the org item (sk ORG) and the webhook secret (sk WEBHOOK_SECRET) share the partition
    svc.orgs.webhook_secret("org-a")

    assert [r.user_id for r in store.iter_after("org-a")] == ["a", "b"]
    assert [r.user_id for r in store.list("org-a", limit=100)[0]] == ["a", "b"]


def test_put_reports_created_then_replaced_and_keeps_created_at(svc: Services) -> None:
    times = iter(["2026-11-26T12:00:00+00:00", "2026-11-27T12:00:00+00:00"])
    from datetime import datetime

    store = RecipientStore(svc.ddb, svc.settings.table_name, clock=lambda: datetime.fromisoformat(next(times)))
    [ana] = people("ana")

    first, created = store.put("org-a", ana)
    second, created_again = store.put("org-a", ana)

    assert (created, created_again) == (True, False)
    assert first.created_at == second.created_at == "2026-11-26T12:00:00.000Z"
    assert second.updated_at == "2026-11-27T12:00:00.000Z"
    assert store.get("org-a", "ana") == second

"""Which plugins run a given OCI image, for pops filtered by image.

A claim filters on plugin ids, so a runner's image filter is translated into the ids of the plugins
whose queued tasks carry that image (`data.boefje.oci_image`). The scan walks the queue in the order a
filtered claim does and reads as many tasks as that claim looks at (SCHEDULER_FILTERED_CLAIM_SCAN), so
it finds exactly the plugins the claim could take. Tasks whose payload names no image are not matched
by an image filter; their runner can filter on plugin ids instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from kat_scheduler.queues import PriorityQueue

ORG_BATCH = 50


def plugins_by_image(queue: PriorityQueue, images: Iterable[str]) -> dict[str, set[str]]:
    wanted = set(images)
    found: dict[str, set[str]] = {}
    if not wanted:
        return found
    for record in queue.records.get_many(_head_ids(queue, queue.filtered_claim_scan)):
        boefje = record.data.get("boefje")
        image = boefje.get("oci_image") if isinstance(boefje, dict) else None
        if image in wanted:
            found.setdefault(image, set()).add(record.plugin_id)
    return found


def _head_ids(queue: PriorityQueue, scan_limit: int) -> list[str]:
    """The first `scan_limit` queued task ids, organisation by organisation in serving order."""
    ids: list[str] = []
    offset = 0
    while len(ids) < scan_limit:
        orgs = queue.serving_order(offset, ORG_BATCH)
        if not orgs:
            break
        for org in orgs:
            ids += queue.queued_ids(org, 0, scan_limit - len(ids))
            if len(ids) >= scan_limit:
                break
        offset += ORG_BATCH
    return ids

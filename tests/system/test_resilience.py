"""The audit's resilience scenario, literally: orders queue while billing_app is stopped and drain once it starts."""

from __future__ import annotations

from .conftest import wait_for

ORDER = {"user_id": "3", "number_of_items": "5", "total_amount": "180"}


def test_orders_wait_in_the_queue_while_billing_is_stopped(platform, new_key):
    accepted = platform.post_order(ORDER, new_key())
    assert accepted.status_code == 200
    first = accepted.json()["message_id"]
    wait_for(lambda: platform.orders_with_ids([first]) == {first: 1}, 30, "the first order in orders_db")

    platform.pm2("stop", "billing_app")
    try:
        response = platform.post_order(ORDER, new_key())
        assert response.status_code == 200
        assert response.json()["message"] == "Message posted"
        second = response.json()["message_id"]
        wait_for(lambda: platform.queue_depth() >= 1, 10, "the second order to wait in billing_queue")
        assert platform.orders_with_ids([second]) == {}
    finally:
        platform.pm2("start", "billing_app")

    wait_for(lambda: platform.orders_with_ids([second]) == {second: 1}, 60, "the queued order in orders_db")
    wait_for(lambda: platform.queue_depth() == 0, 30, "billing_queue to drain")
    assert platform.orders_with_ids([first, second]) == {first: 1, second: 1}

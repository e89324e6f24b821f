"""The audit's resilience scenario, literally: orders queue while billing_app is stopped and drain once it starts."""

from __future__ import annotations

from crud_common.testing import wait_for

ORDER = {"user_id": "3", "number_of_items": "5", "total_amount": "180"}


def test_orders_wait_in_the_queue_while_billing_is_stopped(platform, new_key):
    accepted = platform.post_order(ORDER, new_key())
    assert accepted.status_code == 200
    first = accepted.json()["message_id"]
    wait_for("the first order in orders_db", lambda: platform.orders_with_ids([first]) == {first: 1}, timeout_s=30)

    platform.pm2("stop", "billing_app")
    try:
        response = platform.post_order(ORDER, new_key())
        assert response.status_code == 200
        assert response.json()["message"] == "Message posted"
        second = response.json()["message_id"]
        wait_for("the second order to wait in billing_queue", lambda: platform.queue_depth() >= 1, timeout_s=10)
        assert platform.orders_with_ids([second]) == {}
    finally:
        platform.pm2("start", "billing_app")

    wait_for("the queued order in orders_db", lambda: platform.orders_with_ids([second]) == {second: 1}, timeout_s=60)
    wait_for("billing_queue to drain", lambda: platform.queue_depth() == 0, timeout_s=30)
    assert platform.orders_with_ids([first, second]) == {first: 1, second: 1}

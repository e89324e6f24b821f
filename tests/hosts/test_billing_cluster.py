"""CRUD_MASTER_TOPOLOGY=ha on the namespaces (scripts/test-hosts.sh builds it after the three-vm topology):
billing-vm-2 and billing-vm-3 (scripts/provision-broker-vm.sh) join billing-vm's RabbitMQ cluster, billing_queue
has a replica on each node, the gateway publishes to any of them, billing-vm runs one consumer per node, and the
cluster's ports are open to its nodes only (scripts/firewall/cluster.nft)."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from crud_common.testing import wait_for

from .conftest import BILLING_NODES, REPO_ROOT, SETTINGS, TOPOLOGY, ip_of



@pytest.fixture(autouse=True)
def _ha_build() -> None:
    assert TOPOLOGY == "ha", "run on CRUD_MASTER_TOPOLOGY=ha's build (scripts/test-hosts.sh builds it)"


GATEWAY = f"http://{SETTINGS['GATEWAY_VM_IP']}:{SETTINGS['GATEWAY_PORT']}"
QUEUE = SETTINGS["RABBITMQ_QUEUE"]
# The nodes the Vagrantfile's three billing VMs are, by their hostnames (what the namespaces' hosts are named for).
NODES = {"rabbit@billing-vm", "rabbit@billing-vm-2", "rabbit@billing-vm-3"}


def nodes_in(text: str) -> set[str]:
    return set(re.findall(r"rabbit@[\w-]+", text))


def running_nodes(host) -> set[str]:
    result = host.run("rabbitmqctl", "-q", "eval", "rabbit_nodes:all_running().")
    return nodes_in(result.stdout)


def queues(hosts, *columns: str) -> dict[str, list[str]]:
    """billing-vm's `rabbitmqctl list_queues name COLUMNS...` in the vhost of .env, by queue name."""
    result = hosts["billing"].run("rabbitmqctl", "-q", "list_queues", "-p", SETTINGS["RABBITMQ_VHOST"], "name",
                                  *columns, "--no-table-headers")
    assert result.returncode == 0, result.stderr
    return {name: rest for name, *rest in (line.split("\t") for line in result.stdout.splitlines())}


def stored(hosts, message_id: str) -> int:
    return int(hosts["billing"].sql("orders_db", f"SELECT count(*) FROM orders WHERE message_id = '{message_id}'"))


def order_until_accepted(hosts, key: str, attempts: int = 20) -> tuple[list[int], str]:
    """A careful client: the same order with the same Idempotency-Key until it gets a 200 (a 503 says: send again).
    Returns every status it got and the accepted message id."""
    statuses = []
    for _ in range(attempts):
        answer = hosts["outside"].http("POST", f"{GATEWAY}/api/billing",
                                       {"user_id": 7, "number_of_items": 1, "total_amount": 10},
                                       {"Idempotency-Key": key})
        statuses.append(answer.status)
        if answer.status == 200:
            return statuses, answer.json()["message_id"]
    raise AssertionError(f"order {key} never accepted: {statuses}")


def test_the_three_nodes_form_one_cluster(hosts):
    for host in BILLING_NODES:
        assert running_nodes(hosts[host]) == NODES


def test_billing_queue_and_its_dead_letter_queue_have_a_replica_on_every_node(hosts):
    # billing_queue was declared by billing-vm's consumer before the other nodes joined: they grew it.
    members = queues(hosts, "type", "members")
    for queue in (QUEUE, f"{QUEUE}.dead"):
        kind, replicas = members[queue]
        assert kind == "quorum"
        assert nodes_in(replicas) == NODES


def test_billing_vm_runs_one_consumer_per_node(hosts):
    listed = json.loads(hosts["billing"].run("pm2", "jlist").stdout)
    assert [a["pm2_env"]["status"] for a in listed if a["name"] == "billing_app"] == ["online"] * 3
    wait_for("three consumers on billing_queue", lambda: queues(hosts, "consumers")[QUEUE] == ["3"], timeout_s=60)


def test_orders_through_the_gateway_are_stored_once(hosts):
    # The gateway's workers each start at a node of their own: several orders go through several nodes.
    for _ in range(6):
        statuses, message_id = order_until_accepted(hosts, f"cluster-{uuid.uuid4().hex}")
        assert statuses == [200]
        wait_for(f"order {message_id} in orders_db", lambda: stored(hosts, message_id) == 1, timeout_s=30)


def test_orders_are_taken_and_stored_while_billing_vms_node_is_stopped(hosts):
    billing = hosts["billing"]
    assert billing.run("rabbitmqctl", "-q", "stop_app").returncode == 0
    try:
        wait_for("the two other nodes to see billing-vm's stopped",
                 lambda: running_nodes(hosts["billing-2"]) == NODES - {"rabbit@billing-vm"}, timeout_s=60)
        accepted = []
        for _ in range(10):
            statuses, message_id = order_until_accepted(hosts, f"cluster-{uuid.uuid4().hex}")
            assert set(statuses) <= {200, 503}, statuses
            accepted.append(message_id)
        # billing-vm's consumers moved to the other nodes: the orders are stored while its node is still away.
        for message_id in accepted:
            wait_for(f"order {message_id} in orders_db", lambda: stored(hosts, message_id) == 1, timeout_s=60)
    finally:
        assert billing.run("rabbitmqctl", "-q", "start_app").returncode == 0
    wait_for("the cluster whole again", lambda: running_nodes(billing) == NODES, timeout_s=120)
    assert all(stored(hosts, message_id) == 1 for message_id in accepted)


@pytest.mark.parametrize("target", ["billing", "billing-2", "billing-3"])
def test_the_cluster_ports_are_open_to_its_nodes_only(hosts, target):
    peers = [host for host in BILLING_NODES if host != target]
    for port in (4369, 25672):  # epmd, the distribution port
        for client in ("outside", "gateway", "inventory"):
            assert not hosts[client].can_connect(ip_of(target), port), f"{client} reaches {target}:{port}"
        for peer in peers:
            assert hosts[peer].can_connect(ip_of(target), port), f"{peer} cannot reach {target}:{port}"
    # AMQP: the gateway and the other nodes (billing-vm's consumers, when their own node is away).
    amqp = SETTINGS["RABBITMQ_PORT"]
    assert hosts["gateway"].can_connect(ip_of(target), amqp)
    assert all(hosts[peer].can_connect(ip_of(target), amqp) for peer in peers)
    assert not hosts["outside"].can_connect(ip_of(target), amqp)
    assert not hosts["inventory"].can_connect(ip_of(target), amqp)


@pytest.mark.parametrize("host", ["billing-2", "billing-3"])
def test_a_broker_vm_listens_for_amqp_on_loopback_and_its_address_only(hosts, host):
    assert hosts[host].listening(SETTINGS["RABBITMQ_PORT"]) == {"127.0.0.1", ip_of(host)}
    # epmd where rabbitmqctl (the node's name, on 127.0.2.1 as on Vagrant's boxes) and the peers reach it (and on
    # ::1, which epmd always adds).
    assert hosts[host].listening(4369) - {"[::1]"} == {"127.0.0.1", "127.0.2.1", ip_of(host)}


@pytest.mark.parametrize("host", ["billing-2", "billing-3"])
def test_provisioning_a_broker_vm_again_changes_nothing(hosts, host):
    again = hosts[host].run("bash", str(REPO_ROOT / "scripts/hosts-role.sh"), "broker", timeout=300)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr, again.stderr
    assert running_nodes(hosts[host]) == NODES

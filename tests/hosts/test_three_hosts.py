"""The three-VM deployment, tested on network namespaces with the VMs' addresses and firewall files."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from crud_common.testing import wait_for

from .conftest import REPO_ROOT, SETTINGS, ip_of

GATEWAY = f"http://{SETTINGS['GATEWAY_VM_IP']}:{SETTINGS['GATEWAY_PORT']}"


def test_the_gateway_serves_movies_across_the_hosts(hosts):
    outside = hosts["outside"]
    assert outside.http("GET", f"{GATEWAY}/health").status == 200
    created = outside.http("POST", f"{GATEWAY}/api/movies/", {"title": "A new movie", "description": "Very short"})
    assert created.status == 200
    movie = created.json()
    assert outside.http("GET", f"{GATEWAY}/api/movies/{movie['id']}").json() == movie
    # The row is in movies_db on inventory-vm.
    assert hosts["inventory"].sql("movies_db", f"SELECT title FROM movies WHERE id = {movie['id']}") == "A new movie"


def test_an_order_goes_through_rabbitmq_on_billing_vm_into_orders_db(hosts):
    key = f"hosts-{uuid.uuid4().hex}"
    answer = hosts["outside"].http("POST", f"{GATEWAY}/api/billing/",
                                   {"user_id": "3", "number_of_items": "5", "total_amount": "180"},
                                   {"Idempotency-Key": key})
    assert answer.status == 200 and answer.json()["message"] == "Message posted"
    count = f"SELECT count(*) FROM orders WHERE message_id = '{answer.json()['message_id']}'"
    wait_for("the order in orders_db on billing-vm", lambda: hosts["billing"].sql("orders_db", count) == "1", timeout_s=30)


def queue_ready(hosts) -> int:
    """Messages ready in billing_queue on billing-vm, as `rabbitmqctl list_queues` reports them (its figures
    are statistics, refreshed every few seconds: callers poll)."""
    result = hosts["billing"].run("rabbitmqctl", "-q", "list_queues", "-p", SETTINGS["RABBITMQ_VHOST"], "name",
                                  "messages_ready")
    rows = dict(line.split("\t") for line in result.stdout.strip().splitlines()[1:])
    return int(rows[SETTINGS["RABBITMQ_QUEUE"]])


def test_orders_queue_on_billing_vm_while_its_consumer_is_stopped(hosts):
    billing = hosts["billing"]
    billing.pm2("stop", "billing_app")
    key = f"hosts-{uuid.uuid4().hex}"
    try:
        answer = hosts["outside"].http("POST", f"{GATEWAY}/api/billing", {"user_id": 1, "number_of_items": 2,
                                                                          "total_amount": 3}, {"Idempotency-Key": key})
        assert answer.status == 200
        count = f"SELECT count(*) FROM orders WHERE message_id = '{answer.json()['message_id']}'"
        wait_for("the order to wait in billing_queue on billing-vm", lambda: queue_ready(hosts) == 1, timeout_s=30)
        assert billing.sql("orders_db", count) == "0"
    finally:
        billing.pm2("start", "billing_app")
    wait_for("the queued order once billing_app is back", lambda: billing.sql("orders_db", count) == "1", timeout_s=60)
    wait_for("billing_queue on billing-vm to drain", lambda: queue_ready(hosts) == 0, timeout_s=30)


@pytest.mark.parametrize(
    ("target", "port_setting"),
    [("inventory", "INVENTORY_PORT"), ("inventory", "INVENTORY_DB_PORT"), ("billing", "RABBITMQ_PORT"),
     ("billing", "BILLING_DB_PORT"), ("billing", "BILLING_STATUS_PORT")],
)
def test_the_outside_reaches_nothing_but_the_gateway(hosts, target, port_setting):
    outside = hosts["outside"]
    assert outside.can_connect(ip_of("gateway"), SETTINGS["GATEWAY_PORT"])
    assert not outside.can_connect(ip_of(target), SETTINGS[port_setting])


@pytest.mark.parametrize(
    ("target", "port_setting"),
    [("inventory", "INVENTORY_PORT"), ("billing", "RABBITMQ_PORT")],
)
def test_the_gateway_reaches_what_it_needs(hosts, target, port_setting):
    assert hosts["gateway"].can_connect(ip_of(target), SETTINGS[port_setting])


@pytest.mark.parametrize(
    ("target", "port_setting"),
    [("inventory", "INVENTORY_DB_PORT"), ("billing", "BILLING_DB_PORT"), ("billing", "BILLING_STATUS_PORT")],
)
def test_the_gateway_reaches_nothing_it_does_not_need(hosts, target, port_setting):
    # Least privilege: the databases are their service's alone, on loopback.
    assert not hosts["gateway"].can_connect(ip_of(target), SETTINGS[port_setting])


def test_inventory_and_billing_vms_do_not_reach_each_other(hosts):
    assert not hosts["inventory"].can_connect(ip_of("billing"), SETTINGS["RABBITMQ_PORT"])
    assert not hosts["billing"].can_connect(ip_of("inventory"), SETTINGS["INVENTORY_DB_PORT"])


def test_what_nobody_else_needs_listens_on_loopback_only(hosts):
    # Beneath the firewall: a service nobody else talks to does not listen on the network at all.
    assert hosts["inventory"].listening(SETTINGS["INVENTORY_DB_PORT"]) == {"127.0.0.1"}
    assert hosts["billing"].listening(SETTINGS["BILLING_DB_PORT"]) == {"127.0.0.1"}
    assert hosts["billing"].listening(SETTINGS["RABBITMQ_PORT"]) == {"127.0.0.1", ip_of("billing")}
    assert hosts["billing"].listening(4369) <= {"127.0.0.1", "[::1]"}  # epmd
    assert hosts["billing"].listening(25672) == {"127.0.0.1"}  # the node's distribution port
    assert hosts["billing"].listening(4369)
    # The operator's endpoints: metrics of the gateway and the inventory, billing's status.
    assert hosts["gateway"].listening(SETTINGS["GATEWAY_METRICS_PORT"]) == {"127.0.0.1"}
    assert hosts["inventory"].listening(SETTINGS["INVENTORY_METRICS_PORT"]) == {"127.0.0.1"}
    assert hosts["billing"].listening(SETTINGS["BILLING_STATUS_PORT"]) == {"127.0.0.1"}


ROLE_APPS = {"gateway": ["api_gateway", "api_gateway_front"], "inventory": ["inventory_app"], "billing": ["billing_app"]}


def test_every_vm_runs_its_apps_in_pm2(hosts):
    for role, apps in ROLE_APPS.items():
        listed = json.loads(hosts[role].run("pm2", "jlist").stdout)
        assert sorted((a["name"], a["pm2_env"]["status"]) for a in listed) == [(app, "online") for app in apps]


def recorded_machines(**environment: str) -> dict:
    """What the Vagrantfile defines, read by tests/hosts/vagrant_machines.rb under the given environment."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("CRUD_MASTER_BOX", "CRUD_MASTER_TOPOLOGY")} | environment
    recorded = subprocess.run(["ruby", str(REPO_ROOT / "tests/hosts/vagrant_machines.rb"), "Vagrantfile"],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(recorded.stdout)


def test_the_vagrantfile_validates_and_defines_the_three_vms():
    validated = subprocess.run(["vagrant", "validate", "-p"], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=120)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    machines = recorded_machines()
    # Debian 12 by default, the system `make test-vms` boots; Ubuntu 24.04 on request.
    assert machines.pop("_box") == "bento/debian-12"
    assert recorded_machines(CRUD_MASTER_BOX="bento/ubuntu-24.04")["_box"] == "bento/ubuntu-24.04"
    assert {name: m["networks"] for name, m in machines.items()} == {
        f"{role}-vm": [{"type": "private_network", "ip": ip_of(role)}] for role in ("gateway", "inventory", "billing")
    }
    for name, machine in machines.items():
        role = name.removesuffix("-vm")
        assert machine["hostname"] == name
        assert machine["provisioners"][0]["inline"] == f"bash /vagrant/scripts/provision-{role}-vm.sh"
        assert (REPO_ROOT / f"scripts/provision-{role}-vm.sh").is_file()
        assert machine["provisioners"][0]["env"]["CRUD_MASTER_TOPOLOGY"] == "three-vm"
        assert machine["provisioners"][0]["env"]["VM_IP"] == ip_of(role)


def test_the_vagrantfiles_ha_topology_adds_two_broker_vms():
    machines = recorded_machines(CRUD_MASTER_TOPOLOGY="ha")
    machines.pop("_box")
    roles = {"gateway-vm": "gateway", "inventory-vm": "inventory", "billing-vm": "billing",
             "billing-vm-2": "broker", "billing-vm-3": "broker"}
    assert {name: m["networks"] for name, m in machines.items()} == {
        name: [{"type": "private_network", "ip": ip_of(name.replace("-vm", ""))}] for name in roles
    }
    for name, machine in machines.items():
        provisioner = machine["provisioners"][0]
        assert provisioner["inline"] == f"bash /vagrant/scripts/provision-{roles[name]}-vm.sh"
        assert provisioner["env"]["CRUD_MASTER_TOPOLOGY"] == "ha"
        assert provisioner["env"]["VM_IP"] == ip_of(name.replace("-vm", ""))
        assert provisioner["env"]["BILLING_VM_3_IP"] == ip_of("billing-3")
    # billing-vm, whose node the others join, before them (VirtualBox brings the machines up in this order).
    order = list(machines)
    assert order.index("billing-vm") < order.index("billing-vm-2") < order.index("billing-vm-3")
    refused = subprocess.run(["ruby", str(REPO_ROOT / "tests/hosts/vagrant_machines.rb"), "Vagrantfile"], cwd=REPO_ROOT,
                             env={**os.environ, "CRUD_MASTER_TOPOLOGY": "five"}, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0
    assert "CRUD_MASTER_TOPOLOGY is three-vm (the default) or ha, not 'five'" in refused.stderr


@pytest.mark.parametrize(("role", "database", "other"), [("inventory", "movies_db", "orders_db"),
                                                         ("billing", "orders_db", "movies_db")])
def test_each_vm_lists_its_own_database(hosts, role, database, other):
    # What `sudo -i -u postgres psql` then `\l` shows on that VM.
    databases = hosts[role].sql("postgres", "SELECT datname FROM pg_database").split()
    assert database in databases
    assert other not in databases


@pytest.mark.parametrize("role", ["inventory", "billing", "gateway"])
def test_provisioning_a_role_again_changes_nothing(hosts, role):
    pids_before = {a["name"]: a["pid"] for a in json.loads(hosts[role].run("pm2", "jlist").stdout)}
    again = hosts[role].run("bash", str(REPO_ROOT / "scripts/hosts-role.sh"), role, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr, again.stderr
    assert {a["name"]: a["pid"] for a in json.loads(hosts[role].run("pm2", "jlist").stdout)} == pids_before
    assert sorted(pids_before) == ROLE_APPS[role]

"""Where billing-vm's RabbitMQ puts epmd and its distribution port (scripts/lib/rabbitmq.sh), whatever the node's
host name resolves to: the namespaces share this machine's /etc/hosts, so the case of Vagrant's Debian boxes
(the VM's name on 127.0.2.1) is given to the script's own functions here."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import REPO_ROOT


def rabbitmq_files(resolved: str, cluster_address: str = "") -> str:
    """rabbitmq-env.conf and epmd.socket's drop-in, as written on a machine whose host name resolves to
    `resolved` (getent replaced by a function answering that), for a node of a cluster across machines reached at
    `cluster_address` when given."""
    script = f"""
        export RMQ_CLUSTER_ADDRESS='{cluster_address}'
        source scripts/lib/common.sh
        source scripts/lib/rabbitmq.sh
        getent() {{ [ -n '{resolved}' ] && echo '{resolved}       STREAM billing-vm'; }}
        rmq_env_conf
        echo ---
        if rmq_node_name_on_loopback; then rmq_epmd_socket_conf; fi
    """
    return subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
                          check=True).stdout


def test_on_127_0_0_1_everything_stays_there():
    files = rabbitmq_files("127.0.0.1")
    assert "ERL_EPMD_ADDRESS=127.0.0.1\n" in files
    assert "inet_dist_use_interface {127,0,0,1}" in files
    assert files.endswith("ListenStream=\nListenStream=127.0.0.1:4369\n")


def test_a_name_on_another_loopback_address_gets_it_too():
    # Vagrant's Debian boxes: "127.0.2.1 billing-vm" in /etc/hosts. The node reaches epmd, and rabbitmqctl the
    # node, at that address: epmd on 127.0.0.1 alone, and the node never started.
    files = rabbitmq_files("127.0.2.1")
    assert "ERL_EPMD_ADDRESS=127.0.0.1,127.0.2.1\n" in files
    assert "inet_dist_use_interface {127,0,2,1}" in files
    assert files.endswith("ListenStream=\nListenStream=127.0.0.1:4369\nListenStream=127.0.2.1:4369\n")


def test_a_node_of_a_cluster_is_reached_by_its_peers_at_its_private_address():
    # CRUD_MASTER_TOPOLOGY=ha's billing VMs: epmd on the private address too, and the distribution port on every
    # address (Erlang binds one address or all; the peers use the private one, rabbitmqctl the name's loopback
    # address), which the firewall opens to the peers only (scripts/firewall/cluster.nft).
    files = rabbitmq_files("127.0.2.1", cluster_address="192.168.56.13")
    assert "ERL_EPMD_ADDRESS=127.0.0.1,127.0.2.1,192.168.56.13\n" in files
    assert "inet_dist_use_interface" not in files
    assert files.endswith("ListenStream=\nListenStream=127.0.0.1:4369\nListenStream=127.0.2.1:4369\n"
                          "ListenStream=192.168.56.13:4369\n")


@pytest.mark.parametrize("resolved", ["192.168.56.12", ""], ids=["private-address", "unresolved"])
def test_a_name_on_no_loopback_address_leaves_epmd_and_the_distribution_port_alone(resolved):
    # Restricting them to loopback would stop the node from starting; they stay as RabbitMQ has them, and the
    # file says why.
    files = rabbitmq_files(resolved)
    assert "ERL_EPMD_ADDRESS" not in files and "inet_dist_use_interface" not in files
    assert "resolves to no loopback address" in files
    assert "ListenStream" not in files

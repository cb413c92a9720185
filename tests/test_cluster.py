"""A study on a 2-node local Ray cluster (`ray.cluster_utils.Cluster`) runs trials on both nodes."""

from __future__ import annotations

import pandas as pd
import pytest

from study import launch
from study import results as R


@pytest.fixture
def two_node_cluster():
    """A head and a worker node with 1 CPU each, so concurrent trials must use both."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_a_study_joined_to_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path, data_dir, two_node_cluster):
    node_ids = {node.node_id for node in two_node_cluster.list_all_nodes()}
    assert len(node_ids) == 2
    rc = launch.main(["--family", "vae", "--smoke-test", "--address", two_node_cluster.address,
                      "--data-dir", str(data_dir), "--storage-path", str(tmp_path), "--name", "cluster"])
    assert rc == 0
    table = pd.read_parquet(tmp_path / "cluster" / R.TRIALS_FILE)
    assert len(table) == 4
    assert set(table[R.RAY_NODE_ID]) == node_ids
    history = pd.read_parquet(tmp_path / "cluster" / R.HISTORY_FILE)
    assert len(history) == table[R.EPOCHS_RUN].sum()

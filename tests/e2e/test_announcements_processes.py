"""Block announcements between real node processes: nodes that announce and execute ahead
and a node with ``[p2p] block_announcements = false`` agree on every block, and the
validators that announce take their speculative executions for the proposals."""

from __future__ import annotations

import pytest

from netutil import make_network, run_bench

pytestmark = pytest.mark.e2e


def test_nodes_with_and_without_announcements_agree(tmp_path):
    net = make_network(tmp_path / "net")
    off = net.orgs[0]
    config = net.home(off) / "config.toml"
    text = config.read_text()
    assert "block_announcements = true" in text
    config.write_text(text.replace("block_announcements = true", "block_announcements = false"))
    net.start_all()
    try:
        run_bench(net, 800, 100)
        top = net.assert_identical_chains()
        assert top >= 2
        for org in net.orgs:
            assert net.metric(org, "jangbu_invalid_proposals_total") == 0, net.log_tail(org)
            assert net.metric(org, "jangbu_p2p_bad_messages_total") == 0, net.log_tail(org)
        # The switched-off node neither announces nor executes ahead ...
        assert net.metric(off, "jangbu_blocks_announced_total") == 0
        assert net.metric(off, "jangbu_speculations_total") == 0
        # ... and the others do, and the proposals take what they executed ahead.
        on = [org for org in net.orgs if org != off]
        assert sum(net.metric(org, "jangbu_blocks_announced_total") for org in on) >= 1
        assert sum(net.metric(org, "jangbu_speculations_used_total") for org in on) >= 1
    finally:
        net.stop_all()

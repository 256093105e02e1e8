from policies.diff import PlanItem
from policies.model import Policy
from reconciler.controller.missing_tracker import MissingTracker
from reconciler.state.keys import Key

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
POLICIES = (Policy("web"), Policy("all"), Policy("off", enabled=False))


def item(digest: str, *policies: str) -> PlanItem:
    return PlanItem("p/app", digest, "estargz", policies, ("v1",))


def test_missing_counts_shrink_as_keys_settle_and_a_full_scan_replaces_them() -> None:
    tracker = MissingTracker()
    tracker.replace([item(D1, "web", "all"), item(D2, "all")])
    assert tracker.counts(POLICIES) == {("all", "estargz"): 2, ("web", "estargz"): 1}
    tracker.settled(Key("p/app", D1, "estargz"))
    assert tracker.counts(POLICIES) == {("all", "estargz"): 1, ("web", "estargz"): 0}
    tracker.add([item(D1, "web")])
    assert tracker.counts(POLICIES) == {("all", "estargz"): 1, ("web", "estargz"): 1}
    tracker.replace([])
    assert tracker.counts(POLICIES) == {("all", "estargz"): 0, ("web", "estargz"): 0}

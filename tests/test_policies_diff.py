from policies.desired import FormatWanted
from policies.diff import Plan, missing_formats, plan_items
from policies.load import parse_policies
from policies.model import FormatOptions

D1, D2 = ("sha256:" + c * 64 for c in "12")
ESGZ = FormatWanted("estargz", FormatOptions("-esgz"), ("all", "web"), ("v1",))


def test_a_format_is_missing_until_a_referrer_of_that_format_exists() -> None:
    desired = {"estargz": ESGZ}
    assert missing_formats(desired, []) == (ESGZ,)
    assert missing_formats(desired, [None, "nydus"]) == (ESGZ,)
    assert missing_formats(desired, [None, "estargz"]) == ()
    assert missing_formats({}, ["estargz"]) == ()


def test_plan_counts_missing_per_policy_and_format_with_zeros_for_the_rest() -> None:
    policies = parse_policies(
        [
            {"name": "all", "formats": ["estargz"]},
            {"name": "web", "formats": ["estargz"], "projects": ["web"]},
            {"name": "idle", "formats": ["estargz"], "projects": ["web"]},
            {"name": "off", "enabled": False, "formats": ["estargz"]},
        ],
        "test.yaml",
    )
    plan = Plan(plan_items("web/a", D1, [ESGZ]) + plan_items("web/b", D2, [ESGZ]))
    assert [(i.repository, i.digest, i.format) for i in plan.items] == [
        ("web/a", D1, "estargz"),
        ("web/b", D2, "estargz"),
    ]
    assert plan.missing_by_policy_format(policies) == {
        ("all", "estargz"): 2,
        ("idle", "estargz"): 0,
        ("web", "estargz"): 2,
    }

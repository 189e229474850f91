import pytest

from hivewire import subjects
from hivewire.errors import HiveError
from hivewire.names import is_agent_name, validate_agent_name


@pytest.mark.parametrize("name", ["alice", "a", "bob-2", "m" + "x" * 30, "manager"])
def test_valid_names(name: str) -> None:
    assert validate_agent_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "..", "../x", "a/b", "Alice", "1abc", "-a", "a b", "alice\n", "a" * 32, "a.b", "*", ">", None, 3]
)
def test_invalid_names_are_refused(name: object) -> None:
    assert not is_agent_name(name)
    with pytest.raises(HiveError) as err:
        validate_agent_name(name)
    assert err.value.code == "bad_name"


def test_reserved_names() -> None:
    with pytest.raises(HiveError):
        validate_agent_name("operator")
    assert validate_agent_name("operator", allow_reserved=True) == "operator"


def test_subjects_are_built_in_one_place() -> None:
    assert subjects.broker("alice", "send") == "hive.broker.alice.send"
    assert subjects.broker_pattern("recv") == "hive.broker.*.recv"
    assert subjects.wake("bob") == "hive.agent.bob.wake"
    assert subjects.ctl("bob", "state") == "hive.agent.bob.ctl.state"
    assert subjects.deployer("spawn") == "hive.deployer.spawn"
    assert subjects.deployer_state("bob") == "hive.deployer.state.bob"
    assert subjects.session("output_dir") == "hive.session.output_dir"
    assert subjects.backup("verify") == "hive.backup.verify"
    assert subjects.operator("approvals", "resolve") == "hive.operator.approvals.resolve"
    assert subjects.token("hive.broker.alice.send", 2) == "alice"
    assert subjects.token("hive", 5) == ""


def test_subject_helpers_refuse_bad_input() -> None:
    with pytest.raises(HiveError):
        subjects.broker("a.b", "send")  # a dot would let a name span tokens
    with pytest.raises(ValueError):
        subjects.broker("alice", "nope")
    with pytest.raises(ValueError):
        subjects.ctl("alice", "nope")


def test_the_known_good_cache_stays_bounded_and_never_admits_a_bad_name() -> None:
    from hivewire import names

    for i in range(names._KNOWN_GOOD_MAX + 10):
        assert is_agent_name(f"agent-{i}")
    assert len(names._KNOWN_GOOD) <= names._KNOWN_GOOD_MAX
    assert is_agent_name("agent-1") and is_agent_name("agent-1")  # checked, then served from the cache
    for bad in ("../x", "alice\n", "Alice"):
        assert not is_agent_name(bad) and not is_agent_name(bad)  # a refusal is never cached as good
        assert bad not in names._KNOWN_GOOD

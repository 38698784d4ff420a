import uuid

import pytest

from sekiban import InvalidPartitionKeysError, PartitionKeys


def test_generate_makes_distinct_keys_with_defaults() -> None:
    a, b = PartitionKeys.generate(), PartitionKeys.generate()
    assert a.aggregate_id != b.aggregate_id
    assert (a.group, a.root_partition_key) == ("default", "default")


def test_string_form_parses_back() -> None:
    keys = PartitionKeys.generate("account", "tenant_1")
    assert str(keys) == f"tenant_1@account@{keys.aggregate_id}"
    assert PartitionKeys.parse(str(keys)) == keys


def test_existing_accepts_uuid_strings() -> None:
    raw = uuid.uuid4()
    assert PartitionKeys.existing(str(raw), "g").aggregate_id == raw


@pytest.mark.parametrize(
    "group", ["", "Upper", "a" * 37, "has space", "semi;colon", "quote'", "名前", "a/b", "a@b"]
)
def test_invalid_group_is_rejected(group: str) -> None:
    with pytest.raises(InvalidPartitionKeysError, match="group"):
        PartitionKeys.generate(group)


def test_invalid_root_partition_key_is_rejected() -> None:
    with pytest.raises(InvalidPartitionKeysError, match="root_partition_key"):
        PartitionKeys.generate("g", "DROP TABLE")


@pytest.mark.parametrize("text", ["", "a@b", "a@b@not-a-uuid", "a@b@c@d", f"X@g@{uuid.uuid4()}"])
def test_malformed_string_form_is_rejected(text: str) -> None:
    with pytest.raises(InvalidPartitionKeysError):
        PartitionKeys.parse(text)


def test_aggregate_id_must_be_a_uuid() -> None:
    with pytest.raises(InvalidPartitionKeysError):
        PartitionKeys("not-a-uuid")  # type: ignore[arg-type]


def test_only_the_canonical_string_form_parses() -> None:
    keys = PartitionKeys.generate("account")
    uid = keys.aggregate_id
    for spelling in [
        f"default@account@{str(uid).upper()}",
        f"default@account@{uid.hex}",
        f"default@account@{{{uid}}}",
        f"default@account@urn:uuid:{uid}",
        f" default@account@{uid}",
        f"default@account@{uid}\n",
    ]:
        with pytest.raises(InvalidPartitionKeysError, match=r"canonical|must"):
            PartitionKeys.parse(spelling)
    assert PartitionKeys.parse(f"default@account@{uid}") == keys

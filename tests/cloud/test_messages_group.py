"""The group-picture fields of a render job: 2-4 distinct members for mode 'group', none for any other mode."""

import pytest

from cloud.messages import GroupMember, MessageError, RenderJob, decode, encode


def _member(n: int) -> GroupMember:
    return GroupMember(
        user_id=str(n),
        model_id=f"m{n}",
        model_key=f"users/{n}/models/m{n}/lora.safetensors",
        subject=f"tok{n} person",
    )


def _job(**kw) -> RenderJob:
    return RenderJob(job_id="j", order_id="o", user_id="1", base_model="base", prompt="three friends", **kw)


def test_a_group_job_round_trips_with_its_members_in_order():
    job = _job(mode="group", members=[_member(1), _member(2), _member(3)], layout="row")
    back = decode(encode(job), RenderJob)
    assert [m.user_id for m in back.members] == ["1", "2", "3"] and back.layout == "row"


@pytest.mark.parametrize("count", [0, 1, 5])
def test_a_group_job_needs_two_to_four_members(count):
    with pytest.raises(ValueError):
        _job(
            mode="group",
            members=[_member(n) for n in range(count)][:4] + ([_member(9)] if count == 5 else []),
        )


def test_one_member_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        _job(mode="group", members=[_member(1), _member(1)])


def test_members_on_a_portrait_job_are_refused_on_the_wire():
    body = encode(_job()).replace('"members":[]', '"members":[' + _member(2).model_dump_json() + "]")
    with pytest.raises(MessageError, match="group pictures"):
        decode(body, RenderJob)


def test_a_layout_id_cannot_carry_a_path():
    with pytest.raises(ValueError):
        _job(mode="group", members=[_member(1), _member(2)], layout="../../etc")

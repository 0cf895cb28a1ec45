"""`photogen aws bootstrap | status | teardown` and the autoscaler loop against moto's real HTTP server.

What moto cannot show: real instances booting, spot interruptions and lifecycle-hook waits. Those calls are checked
at the call level here (the hook and warm pool exist with the right settings); their timing is simulated in
bench/fleet.py.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from cloud.fleet import aws
from cloud.fleet.cli import build_pools, run_aws, status_lines
from cloud.fleet.scaling import autoscale_once
from storage.settings import load_settings

AGENT_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/photogen-agent:0.1.0"  # as SELF_HOSTING.md


@pytest.fixture
def fleet_settings(moto_endpoint: str, unique_name: str):
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-1a")["Subnet"][
        "SubnetId"
    ]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    return load_settings(
        blob_url=f"s3://{unique_name}/pg",
        queue_url="sqs://",
        queue_prefix=unique_name,
        aws_endpoint_url=moto_endpoint,
        fleet_name=unique_name,
        fleet_ami_id=ami,
        fleet_subnet_ids=[subnet],
        fleet_train_max=3,
        fleet_scale_in_after_s=60,
        fleet_agent_image=AGENT_IMAGE,
    )


def _clients(settings):
    def c(name):
        return boto3.client(name, region_name="us-east-1", endpoint_url=settings.aws_endpoint_url)

    return c("s3"), c("sqs"), c("iam"), c("ec2"), c("autoscaling")


def test_bootstrap_creates_everything_and_is_idempotent(fleet_settings) -> None:
    first = aws.bootstrap(fleet_settings)
    assert any(line.startswith("created") and "auto scaling group" in line for line in first.lines)
    second = aws.bootstrap(fleet_settings)
    assert not any(line.startswith("created") for line in second.lines), second.lines

    s3, sqs, iam, ec2, asg = _clients(fleet_settings)
    names = aws.names_from(fleet_settings)
    enc = s3.get_bucket_encryption(Bucket=names.bucket)["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=names.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=names.bucket)["Rules"]}
    assert rules["training-photos"]["Expiration"]["Days"] == fleet_settings.photo_retention_days
    assert rules["previews"]["Expiration"]["Days"] == 1
    assert rules["previews"]["Filter"]["Tag"] == aws.PREVIEW_TAG

    for kind in ("train", "render", "events"):
        url = sqs.get_queue_url(QueueName=names.queue(kind))["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
        assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(f"{names.queue(kind)}-dlq")

    policy = iam.get_role_policy(RoleName=names.role, PolicyName=f"{names.fleet}-agent")["PolicyDocument"]
    if isinstance(policy, str):
        policy = json.loads(policy)
    for statement in policy["Statement"]:
        assert all(not a.endswith("*") for a in statement["Action"]), statement  # no wildcard actions
    for blob in (s for s in policy["Statement"] if s["Action"][0].startswith("s3:")):
        assert all(r.startswith(f"arn:aws:s3:::{names.bucket}") for r in blob["Resource"]), blob
    tombstones = next(s for s in policy["Statement"] if s["Sid"] == "ReadTombstones")
    assert tombstones["Action"] == ["s3:GetObject"]  # agents read cancels and forgets, never write them
    assert tombstones["Resource"] == [f"arn:aws:s3:::{names.bucket}/pg/control/*"]
    consume = next(s for s in policy["Statement"] if s["Sid"] == "ConsumeJobs")
    assert not any("events" in r for r in consume["Resource"])
    profile = iam.get_instance_profile(InstanceProfileName=names.instance_profile)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [names.role]

    versions = ec2.describe_launch_template_versions(LaunchTemplateName=names.launch_template)[
        "LaunchTemplateVersions"
    ]
    data = versions[0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 for the spot watcher
    groups = asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[names.group("train"), names.group("render")]
    )
    assert len(groups["AutoScalingGroups"]) == 2
    train = next(g for g in groups["AutoScalingGroups"] if g["AutoScalingGroupName"] == names.group("train"))
    dist = train["MixedInstancesPolicy"]["InstancesDistribution"]
    assert dist["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert dist["OnDemandPercentageAboveBaseCapacity"] == 0
    assert train["CapacityRebalance"] is True
    overrides = [o["InstanceType"] for o in train["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]]
    assert {t.split(".")[0] for t in overrides} == {"g5", "g6", "g4dn"}
    hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=names.group("train"))["LifecycleHooks"]
    assert hooks[0]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"


def test_user_data_starts_the_agent_and_carries_no_secret(fleet_settings) -> None:
    script = aws.user_data(fleet_settings.model_copy(update={"discord_token": "very-secret"}))
    assert "photogen agent" in script and "--gpus all" in script
    assert "very-secret" not in script and "DISCORD" not in script


def test_render_pool_on_demand_gets_a_warm_pool(fleet_settings) -> None:
    settings = fleet_settings.model_copy(update={"fleet_render_on_demand": True})
    aws.bootstrap(settings)
    _, _, _, _, asg = _clients(settings)
    names = aws.names_from(settings)
    warm = asg.describe_warm_pool(AutoScalingGroupName=names.group("render"))
    assert warm["WarmPoolConfiguration"]["PoolState"] == "Stopped"
    render = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group("render")])[
        "AutoScalingGroups"
    ][0]
    assert (
        render["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 100
    )


def test_autoscaler_scales_from_zero_keeps_busy_and_scales_back(fleet_settings) -> None:
    aws.bootstrap(fleet_settings)
    _, _, _, _, asg = _clients(fleet_settings)
    pools = build_pools(fleet_settings)
    train_pool = pools[0]
    for _ in range(2):
        train_pool.queue.send('{"probe": true}')
    decisions = autoscale_once(asg, pools, now=0.0)
    assert decisions[0].desired == 2 and decisions[1].desired == 0
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[train_pool.group])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 2
    # one agent is busy: it protects its instance; the queue drains
    instance = group["Instances"][0]["InstanceId"]
    asg.set_instance_protection(
        InstanceIds=[instance], AutoScalingGroupName=train_pool.group, ProtectedFromScaleIn=True
    )
    train_pool.queue.purge()
    held = autoscale_once(asg, pools, now=30.0)[0]
    assert held.desired == 2 and "hold" in held.reason
    after_idle = autoscale_once(asg, pools, now=100.0)[0]
    assert after_idle.desired == 1, after_idle.reason  # never below the busy agent
    lines = status_lines(fleet_settings)
    assert any(line.startswith("pool train: desired 1") for line in lines), lines
    assert any(line.startswith("spend estimate") for line in lines)


def test_teardown_removes_compute_and_keeps_data(fleet_settings, capsys) -> None:
    aws.bootstrap(fleet_settings)
    assert run_aws(fleet_settings, "teardown", yes=True) == 0
    out = capsys.readouterr().out
    assert "deleted  iam role" in out and "kept" in out
    s3, _, _iam, _, asg = _clients(fleet_settings)
    names = aws.names_from(fleet_settings)
    assert not asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group("train")])[
        "AutoScalingGroups"
    ]
    s3.head_bucket(Bucket=names.bucket)  # still there


def test_bootstrap_refuses_without_s3_blob_url(fleet_settings) -> None:
    with pytest.raises(SystemExit, match="BLOB_URL must be s3://"):
        aws.bootstrap(fleet_settings.model_copy(update={"blob_url": "file://data/blobs"}))


def test_training_photos_carry_the_lifecycle_tag(fleet_settings) -> None:
    from storage import keys
    from storage.blobs import open_blob_store

    aws.bootstrap(fleet_settings)
    # moto serves plain HTTP, which the TLS-only bucket policy refuses (as the test below shows): lifted here.
    _clients(fleet_settings)[0].delete_bucket_policy(Bucket=aws.names_from(fleet_settings).bucket)
    store = open_blob_store(fleet_settings)
    photo, render = keys.photo_key("42", "o1", 0), keys.render_key("42", "j1", 0)
    checkpoint = keys.checkpoint_prefix("42", "j1") + "LATEST"
    store.put(photo, b"jpeg")
    store.put(render, b"png")
    store.put(checkpoint, b"step-00000002")
    s3, *_ = _clients(fleet_settings)
    names = aws.names_from(fleet_settings)

    def tags(key: str) -> list[dict]:
        return s3.get_object_tagging(Bucket=names.bucket, Key=f"pg/{key}")["TagSet"]

    assert tags(photo) == [aws.PHOTO_TAG]
    assert tags(render) == []
    rule = next(
        r
        for r in s3.get_bucket_lifecycle_configuration(Bucket=names.bucket)["Rules"]
        if r["ID"] == "training-photos"
    )
    assert rule["Filter"]["Tag"] == aws.PHOTO_TAG
    # Checkpoints live under the member's prefix (forgetting them deletes them): expired by tag, like photos.
    assert tags(checkpoint) == [aws.CHECKPOINT_TAG]
    rule = next(
        r
        for r in s3.get_bucket_lifecycle_configuration(Bucket=names.bucket)["Rules"]
        if r["ID"] == "checkpoints"
    )
    assert rule["Filter"]["Tag"] == aws.CHECKPOINT_TAG
    preview = keys.preview_key("42", "j1", 3)
    store.put(preview, b"jpeg")
    assert tags(preview) == [aws.PREVIEW_TAG]


# --- issue 11, "Trust": least privilege, TLS only, encrypted volumes (as created on moto's server) -------------


def _statements(iam, names) -> dict[str, dict]:
    policy = iam.get_role_policy(RoleName=names.role, PolicyName=f"{names.fleet}-agent")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    return {s["Sid"]: s for s in policy["Statement"]}


def test_the_agent_role_gets_only_what_agents_do(fleet_settings) -> None:
    aws.bootstrap(fleet_settings)
    _, _, iam, _, _ = _clients(fleet_settings)
    names = aws.names_from(fleet_settings)
    statements = _statements(iam, names)
    bucket = f"arn:aws:s3:::{names.bucket}"
    s3_rights: dict[str, set[str]] = {}
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            if action.startswith("s3:"):
                for resource in statement["Resource"]:
                    s3_rights.setdefault(resource, set()).add(action)
    assert s3_rights == {
        # a member's files, previews, checkpoints and done markers: tagged for expiry, never deleted or listed
        f"{bucket}/pg/users/*": {"s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"},
        f"{bucket}/pg/users/*/checkpoints/*": {"s3:DeleteObject"},  # deletes only checkpoints
        f"{bucket}/pg/shared/class-images/*": {"s3:GetObject", "s3:PutObject"},
        f"{bucket}/pg/control/*": {"s3:GetObject"},  # reads cancels and forgets, never writes them
        bucket: {"s3:ListBucket"},
    }
    listing = statements["ListOwnPrefixes"]["Condition"]["StringLike"]["s3:prefix"]
    assert listing == ["pg/users/*/checkpoints/*", "pg/control/*", "pg/shared/class-images/*"]
    actions = {a for s in statements.values() for a in s["Action"]}
    assert "autoscaling:DescribeAutoScalingInstances" in actions  # the agent finds its own group
    forbidden = ("iam:", "ec2:", "sqs:PurgeQueue", "sqs:DeleteQueue", "s3:PutBucket", "s3:DeleteBucket")
    assert not any(a.startswith(forbidden) for a in actions)


def test_the_bucket_refuses_plain_http_and_the_agents_disks_are_encrypted(fleet_settings) -> None:
    aws.bootstrap(fleet_settings)
    s3, _, _, ec2, _ = _clients(fleet_settings)
    names = aws.names_from(fleet_settings)
    policy = json.loads(s3.get_bucket_policy(Bucket=names.bucket)["Policy"])
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert len(deny) == 1 and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny[0]["Resource"]) == {f"arn:aws:s3:::{names.bucket}", f"arn:aws:s3:::{names.bucket}/*"}
    assert deny[0]["Principal"] == "*" and deny[0]["Action"] in ("s3:*", ["s3:*"])
    # moto evaluates bucket policies, and its server speaks plain HTTP: every request is refused.
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=names.bucket, Key="pg/users/1/photos/o/0.jpg", Body=b"jpeg")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    versions = ec2.describe_launch_template_versions(LaunchTemplateName=names.launch_template)
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    root = ec2.describe_images(ImageIds=[fleet_settings.fleet_ami_id])["Images"][0]["RootDeviceName"]
    (mapping,) = data["BlockDeviceMappings"]
    assert mapping["DeviceName"] == root
    assert mapping["Ebs"]["Encrypted"] is True and mapping["Ebs"]["DeleteOnTermination"] is True


def test_bootstrap_refuses_an_unknown_ami(fleet_settings) -> None:
    bad = fleet_settings.model_copy(update={"fleet_ami_id": "ami-0000000000000dead"})
    with pytest.raises(SystemExit, match="FLEET_AMI_ID ami-0000000000000dead is not an image"):
        aws.bootstrap(bad)


# --- issue 13: the agent image is the one the operator pushed; nobody publishes a default -------------------


def test_bootstrap_without_an_agent_image_refuses_before_creating_anything(fleet_settings) -> None:
    unset = fleet_settings.model_copy(update={"fleet_agent_image": None})
    with pytest.raises(SystemExit) as refused:
        aws.bootstrap(unset)
    assert "FLEET_AGENT_IMAGE" in str(refused.value) and "\n" not in str(refused.value)
    s3, sqs, iam, _, _ = _clients(fleet_settings)
    names = aws.names_from(fleet_settings)
    assert names.bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not sqs.list_queues(QueueNamePrefix=names.queue_prefix).get("QueueUrls")
    with pytest.raises(ClientError):
        iam.get_role(RoleName=names.role)


def test_an_ecr_agent_image_is_pulled_with_the_agents_role_and_only_that_repository(fleet_settings) -> None:
    script = aws.user_data(fleet_settings)
    login = "aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin "
    lines = script.splitlines()
    login += "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert login in lines and lines.index(login) < lines.index(f"docker pull {AGENT_IMAGE}")
    aws.bootstrap(fleet_settings)
    _, _, iam, _, _ = _clients(fleet_settings)
    statements = _statements(iam, aws.names_from(fleet_settings))
    assert statements["EcrLogin"]["Action"] == ["ecr:GetAuthorizationToken"]
    assert statements["PullAgentImage"]["Resource"] == [
        "arn:aws:ecr:us-east-1:123456789012:repository/photogen-agent"
    ]
    assert set(statements["PullAgentImage"]["Action"]) == {
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    }


def test_an_image_outside_ecr_gets_no_ecr_rights_and_no_login(fleet_settings) -> None:
    image = "registry.example.org/photogen/agent:0.1.0"
    public = fleet_settings.model_copy(update={"fleet_agent_image": image})
    assert "ecr" not in aws.user_data(public)
    assert "docker pull registry.example.org/photogen/agent:0.1.0" in aws.user_data(public)
    assert aws.ecr_pull_statements(public.fleet_agent_image) == []

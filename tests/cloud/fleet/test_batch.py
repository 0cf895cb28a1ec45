"""AWS Batch for training (`photogen aws bootstrap --batch`, the autoscaler's Batch round) on moto's HTTP server.

What moto cannot show: a GPU instance booting and running the container. moto would run a submitted job in Docker;
here its jobs are held in SUBMITTED through moto's state manager (as a real queue holds them until capacity
boots), and tests/gpu_agent/agent/test_agent_batch.py runs the job definition's command as that instance would.
"""

from __future__ import annotations

import json

import boto3
import pytest

from cloud.fleet import aws
from cloud.fleet.batch import BatchNames, active_jobs, jobs_to_submit, submit_backlog
from cloud.fleet.cli import build_pools
from cloud.queues import open_queues
from storage.settings import Settings, load_settings


@pytest.fixture
def batch_settings(moto_endpoint: str, unique_name: str) -> Settings:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24", AvailabilityZone="us-east-1a")["Subnet"][
        "SubnetId"
    ]
    group = ec2.create_security_group(GroupName=f"{unique_name}-sg", Description="egress only", VpcId=vpc)[
        "GroupId"
    ]
    return load_settings(
        blob_url=f"s3://{unique_name}/pg",
        queue_url="sqs://",
        queue_prefix=unique_name,
        aws_endpoint_url=moto_endpoint,
        fleet_name=unique_name,
        fleet_ami_id=ec2.describe_images()["Images"][0]["ImageId"],
        fleet_subnet_ids=[subnet],
        fleet_security_group_ids=[group],
        fleet_train_backend="batch",
        fleet_train_max=2,
        fleet_agent_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/photogen-agent:1.0",
    )


def _batch(settings: Settings):
    return boto3.client("batch", region_name="us-east-1", endpoint_url=settings.aws_endpoint_url)


def test_bootstrap_batch_creates_a_spot_environment_a_queue_and_a_once_job_definition(batch_settings) -> None:
    first = aws.bootstrap(batch_settings.model_copy(update={"discord_token": "very-secret"}), batch=True)
    assert any(line.startswith("created") and "batch compute environment" in line for line in first.lines)
    second = aws.bootstrap(batch_settings, batch=True)
    assert not any(line.startswith("created") for line in second.lines), second.lines  # idempotent

    batch, bn = _batch(batch_settings), BatchNames(batch_settings.fleet_name)
    env = batch.describe_compute_environments(computeEnvironments=[bn.compute_environment])[
        "computeEnvironments"
    ][0]
    resources = env["computeResources"]
    assert env["type"] == "MANAGED" and resources["type"] == "SPOT"
    assert resources["allocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert resources["minvCpus"] == 0  # nothing runs, nothing is paid, while there is no training
    assert resources["instanceTypes"] == batch_settings.fleet_train_instance_types
    queue = batch.describe_job_queues(jobQueues=[bn.job_queue])["jobQueues"][0]
    assert queue["state"] == "ENABLED"
    assert queue["computeEnvironmentOrder"][0]["computeEnvironment"].endswith(bn.compute_environment)

    definitions = batch.describe_job_definitions(jobDefinitionName=bn.job_definition, status="ACTIVE")[
        "jobDefinitions"
    ]
    latest = max(definitions, key=lambda d: d["revision"])
    container = latest["containerProperties"]
    assert container["command"][:3] == ["photogen", "agent", "--once"]
    assert container["image"] == batch_settings.fleet_agent_image
    assert {"type": "GPU", "value": "1"} in container["resourceRequirements"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert (
        json.loads(environment["AGENT_KINDS"]) == ["train"]
        and environment["QUEUE_PREFIX"] == batch_settings.queue_prefix
    )
    assert "very-secret" not in json.dumps(latest) and not any("DISCORD" in k for k in environment)
    retry = latest["retryStrategy"]
    assert retry["attempts"] == batch_settings.fleet_batch_attempts
    spot = retry["evaluateOnExit"][0]  # a spot reclaim is retried (Batch reads the action case-insensitively)
    assert spot["onStatusReason"] == "Host EC2*" and spot["action"].upper() == "RETRY"

    # The job role is the agent's least-privilege policy, for ECS tasks; the instances only run ECS.
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=batch_settings.aws_endpoint_url)
    job_role = iam.get_role(RoleName=bn.job_role)["Role"]
    assert container["jobRoleArn"] == job_role["Arn"]
    trust = job_role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"]["Service"] == "ecs-tasks.amazonaws.com"
    policy = iam.get_role_policy(RoleName=bn.job_role, PolicyName=bn.job_role)["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    assert all(not a.endswith("*") for s in policy["Statement"] for a in s["Action"])
    attached = iam.list_attached_role_policies(RoleName=bn.instance_role)["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonEC2ContainerServiceforEC2Role"]
    assert iam.list_role_policies(RoleName=bn.instance_role)["PolicyNames"] == []

    report = aws.teardown(batch_settings)
    assert any("batch job queue" in line and line.startswith("deleted") for line in report.lines), (
        report.lines
    )
    assert not batch.describe_job_queues(jobQueues=[bn.job_queue])["jobQueues"]
    assert not batch.describe_compute_environments(computeEnvironments=[bn.compute_environment])[
        "computeEnvironments"
    ]


def test_batch_needs_security_groups(batch_settings) -> None:
    with pytest.raises(SystemExit, match="FLEET_SECURITY_GROUP_IDS"):
        aws.bootstrap(batch_settings.model_copy(update={"fleet_security_group_ids": []}), batch=True)


@pytest.mark.parametrize(
    ("backlog", "active", "cap", "expected"),
    [(0, 0, 5, 0), (3, 0, 5, 3), (3, 1, 5, 2), (3, 3, 5, 0), (9, 0, 5, 5), (9, 4, 5, 1), (2, 4, 5, 0)],
)
def test_one_batch_job_per_uncovered_training_message(backlog, active, cap, expected) -> None:
    assert jobs_to_submit(backlog, active, cap) == expected


def test_the_batch_round_submits_for_the_backlog_and_counts_active_jobs(
    batch_settings, moto_batch_jobs_held
) -> None:
    aws.bootstrap(batch_settings, batch=True)
    batch, bn = _batch(batch_settings), BatchNames(batch_settings.fleet_name)
    train = open_queues(batch_settings).train
    for n in range(3):
        train.send(json.dumps({"probe": n}))
    assert submit_backlog(batch, batch_settings, train) == 2  # FLEET_TRAIN_MAX
    assert active_jobs(batch, bn.job_queue) == 2
    assert submit_backlog(batch, batch_settings, train) == 0  # covered: nothing more until one ends
    jobs = batch.list_jobs(jobQueue=bn.job_queue, jobStatus="SUBMITTED")["jobSummaryList"]
    described = batch.describe_jobs(jobs=[j["jobId"] for j in jobs])["jobs"]
    assert {d["jobDefinition"].rsplit("/", 1)[-1].split(":")[0] for d in described} == {bn.job_definition}
    # the training auto scaling group is not scaled while trainings run on Batch
    assert [p.policy.name for p in build_pools(batch_settings)] == ["render"]

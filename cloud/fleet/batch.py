"""Training on AWS Batch (``FLEET_TRAIN_BACKEND=batch``): the original Photogen's training path.

``photogen aws bootstrap --batch`` creates, idempotently:

- a managed **spot** compute environment (price-capacity-optimized, GPU instance types of the training pool, 0 vCPUs
  when idle, Batch's ECS GPU AMI) whose instances hold only the ECS agent's permissions;
- a job queue on it;
- a job definition whose container runs ``photogen agent --once`` (one training job, then exit) with the agent's
  least-privilege policy as its job role, one GPU, and a retry strategy: a spot reclaim ("Host EC2 … terminated")
  and every non-zero exit are retried, up to FLEET_BATCH_ATTEMPTS; a bad image is not.

The autoscaler then submits one Batch job per training message not already covered by an active Batch job
(``jobs_to_submit``) instead of scaling the training auto scaling group. Each Batch job takes *a* message from
the train queue — the queue, not Batch, says which order is trained, so a retried Batch job (or one that finds
another agent was faster) never trains an order twice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from cloud.fleet import aws
from cloud.queues.base import JobQueue
from storage.settings import Settings

log = logging.getLogger(__name__)

ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
ONCE_COMMAND = ["photogen", "agent", "--once", "--wait", "120"]
GPU_JOB = {"vcpus": 4, "memory_mib": 15_000}
"""One g5.xlarge-sized slot (4 vCPUs, 16 GiB, less what ECS keeps): a GPU instance runs one training at a time."""
ECS_INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
BATCH_SERVICE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSBatchServiceRole"


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


@dataclass(frozen=True)
class BatchNames:
    fleet: str

    @property
    def compute_environment(self) -> str:
        return f"{self.fleet}-train"

    @property
    def job_queue(self) -> str:
        return f"{self.fleet}-train"

    @property
    def job_definition(self) -> str:
        return f"{self.fleet}-agent-once"

    @property
    def service_role(self) -> str:
        return f"{self.fleet}-batch-service"

    @property
    def instance_role(self) -> str:
        return f"{self.fleet}-batch-instance"

    @property
    def job_role(self) -> str:
        return f"{self.fleet}-agent-job"


def retry_strategy(settings: Settings) -> dict[str, Any]:
    """Batch reads the conditions in order, the first match decides; no match means retry."""
    return {
        "attempts": settings.fleet_batch_attempts,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},  # the spot instance was reclaimed
            {
                "onReason": "CannotPullContainerError*",
                "action": "EXIT",
            },  # a wrong image: retrying cannot help
        ],
    }


def job_environment(settings: Settings) -> list[dict[str, str]]:
    """What an agent needs to find its queues and files; no secret (credentials come from the job role)."""
    values = {name: str(getattr(settings, name.lower())) for name in aws.AGENT_ENV}
    values.update(AGENT_KINDS='["train"]', DEVICE="cuda")  # lists are JSON in the environment
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _ensure_role(
    iam: Any,
    name: str,
    trust: str,
    report: aws.Report,
    *,
    managed: str | None = None,
    inline: dict | None = None,
) -> str:
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        report.add(f"iam role {name}", "exists")
    except ClientError:
        arn = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=trust, Description="Photogen on AWS Batch"
        )["Role"]["Arn"]
        report.add(f"iam role {name}", "created")
    if managed:
        iam.attach_role_policy(RoleName=name, PolicyArn=managed)
    if inline is not None:
        iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(inline))
    return arn


def _ensure_instance_profile(iam: Any, name: str, report: aws.Report) -> str:
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except ClientError:
        profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        report.add(f"instance profile {name}", "created")
    if not any(r["RoleName"] == name for r in profile.get("Roles", [])):
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return profile["Arn"]


def compute_resources(settings: Settings, instance_profile_arn: str) -> dict[str, Any]:
    return {
        "type": "SPOT",
        "allocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED",
        "minvCpus": 0,
        "maxvCpus": settings.fleet_batch_max_vcpus,
        "instanceTypes": list(settings.fleet_train_instance_types),
        "subnets": list(settings.fleet_subnet_ids),
        "securityGroupIds": list(settings.fleet_security_group_ids),
        "instanceRole": instance_profile_arn,
        "ec2Configuration": [{"imageType": "ECS_AL2_NVIDIA"}],
        "tags": {"photogen-fleet": settings.fleet_name, "photogen-pool": "train"},
    }


def ensure_batch(settings: Settings, names: aws.Names, policy: dict, report: aws.Report) -> BatchNames:
    """The compute environment, job queue and job definition (see the module docstring)."""
    if not settings.fleet_subnet_ids or not settings.fleet_security_group_ids:
        raise SystemExit(
            "photogen aws: AWS Batch needs FLEET_SUBNET_IDS and FLEET_SECURITY_GROUP_IDS (egress only)"
        )
    bn = BatchNames(names.fleet)
    iam = aws.client(settings, "iam")
    service_arn = _ensure_role(
        iam, bn.service_role, _trust("batch.amazonaws.com"), report, managed=BATCH_SERVICE_POLICY
    )
    _ensure_role(iam, bn.instance_role, _trust("ec2.amazonaws.com"), report, managed=ECS_INSTANCE_POLICY)
    profile_arn = _ensure_instance_profile(iam, bn.instance_role, report)
    job_role_arn = _ensure_role(iam, bn.job_role, _trust("ecs-tasks.amazonaws.com"), report, inline=policy)

    batch = aws.client(settings, "batch")
    resources = compute_resources(settings, profile_arn)
    found = batch.describe_compute_environments(computeEnvironments=[bn.compute_environment])
    if found["computeEnvironments"]:
        # What an existing environment lets one change in place; the rest needs a new environment.
        batch.update_compute_environment(
            computeEnvironment=bn.compute_environment,
            state="ENABLED",
            computeResources={"maxvCpus": resources["maxvCpus"]},
        )
        report.add(f"batch compute environment {bn.compute_environment}", "updated")
    else:
        batch.create_compute_environment(
            computeEnvironmentName=bn.compute_environment,
            type="MANAGED",
            state="ENABLED",
            computeResources=resources,
            serviceRole=service_arn,
        )
        report.add(f"batch compute environment {bn.compute_environment}", "created")

    if batch.describe_job_queues(jobQueues=[bn.job_queue])["jobQueues"]:
        report.add(f"batch job queue {bn.job_queue}", "exists")
    else:
        batch.create_job_queue(
            jobQueueName=bn.job_queue,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": bn.compute_environment}],
        )
        report.add(f"batch job queue {bn.job_queue}", "created")

    revision = batch.register_job_definition(
        jobDefinitionName=bn.job_definition,
        type="container",
        platformCapabilities=["EC2"],
        containerProperties={
            "image": settings.fleet_agent_image,
            "command": ONCE_COMMAND,
            "jobRoleArn": job_role_arn,
            "environment": job_environment(settings),
            "resourceRequirements": [
                {"type": "GPU", "value": "1"},
                {"type": "VCPU", "value": str(GPU_JOB["vcpus"])},
                {"type": "MEMORY", "value": str(GPU_JOB["memory_mib"])},
            ],
        },
        retryStrategy=retry_strategy(settings),
        timeout={"attemptDurationSeconds": settings.fleet_batch_attempt_timeout_s},
        tags={"photogen-fleet": names.fleet},
    )["revision"]
    report.add(f"batch job definition {bn.job_definition}:{revision}", "updated")
    return bn


def teardown_batch(settings: Settings, report: aws.Report, wait_s: float = 120.0) -> None:
    """Disable and delete the job queue, then the compute environment (AWS deletes asynchronously: the
    environment can go only once the queue is gone); deregister the job definitions; remove the three roles."""
    bn = BatchNames(settings.fleet_name)
    batch = aws.client(settings, "batch")
    if batch.describe_job_queues(jobQueues=[bn.job_queue])["jobQueues"]:
        batch.update_job_queue(jobQueue=bn.job_queue, state="DISABLED")
        _wait(
            lambda: _status(batch.describe_job_queues(jobQueues=[bn.job_queue])["jobQueues"]) != "UPDATING",
            wait_s,
        )
        batch.delete_job_queue(jobQueue=bn.job_queue)
        _wait(lambda: not batch.describe_job_queues(jobQueues=[bn.job_queue])["jobQueues"], wait_s)
        report.add(f"batch job queue {bn.job_queue}", "deleted")
    if batch.describe_compute_environments(computeEnvironments=[bn.compute_environment])[
        "computeEnvironments"
    ]:
        batch.update_compute_environment(computeEnvironment=bn.compute_environment, state="DISABLED")
        batch.delete_compute_environment(computeEnvironment=bn.compute_environment)
        report.add(f"batch compute environment {bn.compute_environment}", "deleted")
    for definition in batch.describe_job_definitions(jobDefinitionName=bn.job_definition, status="ACTIVE")[
        "jobDefinitions"
    ]:
        batch.deregister_job_definition(jobDefinition=definition["jobDefinitionArn"])
    iam = aws.client(settings, "iam")
    for role, managed in (
        (bn.service_role, BATCH_SERVICE_POLICY),
        (bn.instance_role, ECS_INSTANCE_POLICY),
        (bn.job_role, None),
    ):
        try:
            if managed:
                iam.detach_role_policy(RoleName=role, PolicyArn=managed)
            else:
                iam.delete_role_policy(RoleName=role, PolicyName=role)
            if role == bn.instance_role:
                iam.remove_role_from_instance_profile(InstanceProfileName=role, RoleName=role)
                iam.delete_instance_profile(InstanceProfileName=role)
            iam.delete_role(RoleName=role)
            report.add(f"iam role {role}", "deleted")
        except ClientError:
            report.add(f"iam role {role}", "absent")


def _status(items: list[dict]) -> str | None:
    return items[0].get("status") if items else None


def _wait(done: Any, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not done() and time.monotonic() < deadline:
        time.sleep(2)


# --- submitting the backlog ------------------------------------------------------------------------------------


def jobs_to_submit(backlog: int, active: int, max_active: int) -> int:
    """One Batch job per training message that no active Batch job will take, never more than ``max_active``
    Batch jobs at once. Pure."""
    return max(0, min(backlog, max_active) - active)


def active_jobs(batch: Any, job_queue: str) -> int:
    total = 0
    for state in ACTIVE_STATES:
        token: str | None = None
        while True:
            page = batch.list_jobs(
                jobQueue=job_queue, jobStatus=state, **({"nextToken": token} if token else {})
            )
            total += len(page.get("jobSummaryList", []))
            token = page.get("nextToken")
            if not token:
                break
    return total


def submit_backlog(batch: Any, settings: Settings, queue: JobQueue) -> int:
    """One round: submit Batch jobs for the training backlog; returns how many were submitted."""
    bn = BatchNames(settings.fleet_name)
    depth = queue.depth()
    backlog = depth.visible + depth.delayed + depth.in_flight
    active = active_jobs(batch, bn.job_queue)
    count = jobs_to_submit(backlog, active, settings.fleet_train_max)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(count):
        batch.submit_job(
            jobName=f"{bn.fleet}-train-{stamp}-{n}", jobQueue=bn.job_queue, jobDefinition=bn.job_definition
        )
    log.info(
        "autoscaler train (batch): backlog %d, active batch jobs %d, submitted %d", backlog, active, count
    )
    return count

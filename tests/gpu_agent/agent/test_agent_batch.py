"""AWS Batch training end to end on moto's server, with the agent in ``--once`` mode.

`photogen aws bootstrap --batch` and the autoscaler's Batch round run for real against moto. What moto cannot do
is boot a GPU instance and run the job's container: the stand-in here reads the submitted job's definition back from
moto and runs its command with its environment as a process on this machine (CPU instead of CUDA, the test's moto
endpoint and model cache added) — exactly what the container would run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from agent_testkit import EventLog, agent_env, train_job

from cloud.fleet import aws
from cloud.fleet.batch import BatchNames, submit_backlog
from cloud.messages import encode
from cloud.queues import open_queues
from storage import keys
from storage.blobs import open_blob_store
from storage.settings import Settings

pytestmark = pytest.mark.usefixtures("moto_batch_jobs_held")


@pytest.fixture
def batch_fleet(make_settings: Callable[..., Settings], moto_endpoint: str, unique_name: str) -> Settings:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{unique_name}-sg", Description="egress", VpcId=vpc)[
        "GroupId"
    ]
    settings = make_settings(
        queue_url="sqs://",
        queue_prefix=unique_name,
        blob_url=f"s3://{unique_name}/pg",
        aws_endpoint_url=moto_endpoint,
        base_model="tiny-sd",
        fleet_name=unique_name,
        fleet_ami_id=ec2.describe_images()["Images"][0]["ImageId"],
        fleet_subnet_ids=[subnet],
        fleet_security_group_ids=[group],
        fleet_train_backend="batch",
        fleet_train_max=4,
        fleet_agent_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/photogen-agent:1.0",
    )
    aws.bootstrap(settings, batch=True)
    # The bucket refuses requests without TLS; moto's endpoint here is plain HTTP on 127.0.0.1.
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint).delete_bucket_policy(
        Bucket=unique_name
    )
    return settings


def _run_submitted_job(
    settings: Settings, tmp_path: Path, name: str, *, wait: str | None = None
) -> tuple[int, str]:
    """What a Batch GPU instance would do with the newest submitted job: run its definition's command with its
    environment (``wait`` overrides --wait, as a Batch container override may)."""
    batch = boto3.client("batch", region_name="us-east-1", endpoint_url=settings.aws_endpoint_url)
    bn = BatchNames(settings.fleet_name)
    summaries = batch.list_jobs(jobQueue=bn.job_queue, jobStatus="SUBMITTED")["jobSummaryList"]
    job = batch.describe_jobs(jobs=[max(summaries, key=lambda j: j["createdAt"])["jobId"]])["jobs"][0]
    definition = batch.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])["jobDefinitions"][0]
    container = definition["containerProperties"]
    command = list(container["command"])
    assert command[:3] == ["photogen", "agent", "--once"]
    if wait is not None:
        command[command.index("--wait") + 1] = wait
    environment = {e["name"]: e["value"] for e in container["environment"]}
    env = {
        **agent_env(settings),
        **environment,
        "DEVICE": "cpu",  # no GPU here
        "AGENT_WORK_DIR": str(tmp_path / name),
    }
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "photogen.cli", *command[1:]],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    return done.returncode, log.read_text(errors="replace")


def test_a_batch_job_trains_one_order_and_exits_0_then_finds_nothing_and_exits_0(
    batch_fleet: Settings, tmp_path: Path
) -> None:
    blobs, queues = open_blob_store(batch_fleet), open_queues(batch_fleet)
    job = train_job(blobs, steps=4)
    queues.train.send(encode(job))
    batch = boto3.client("batch", region_name="us-east-1", endpoint_url=batch_fleet.aws_endpoint_url)
    assert submit_backlog(batch, batch_fleet, queues.train) == 1

    code, log = _run_submitted_job(batch_fleet, tmp_path, "first")
    assert code == 0, log[-3000:]
    events = EventLog(queues)
    done = events.wait_for(
        lambda e: e.job_id == job.job_id and e.kind == "done", timeout=10, what="done event"
    )
    assert keys.model_key(job.user_id, job.model_id) in done.output_keys
    assert blobs.exists(keys.model_key(job.user_id, job.model_id))
    assert queues.train.depth().visible == 0 and queues.train.depth().in_flight == 0  # acked

    # Nothing left to submit; and an attempt that runs again after the work is done (a Batch retry, or a job
    # whose message another agent took) finds the queue empty and ends quietly.
    assert submit_backlog(batch, batch_fleet, queues.train) == 0
    code, log = _run_submitted_job(batch_fleet, tmp_path, "again", wait="2")
    assert code == 0, log[-3000:]
    assert "no job within" in log and "exit status 0" in log
    assert len(events.of(job.job_id, "done")) == 1  # trained once


def test_a_failed_training_exits_non_zero_so_batch_retries(batch_fleet: Settings, tmp_path: Path) -> None:
    blobs, queues = open_blob_store(batch_fleet), open_queues(batch_fleet)
    job = train_job(
        blobs, steps=4, with_photos=False
    )  # its photos are gone: the member is told, the job fails
    queues.train.send(encode(job))
    batch = boto3.client("batch", region_name="us-east-1", endpoint_url=batch_fleet.aws_endpoint_url)
    assert submit_backlog(batch, batch_fleet, queues.train) == 1
    code, log = _run_submitted_job(batch_fleet, tmp_path, "failing")
    assert code == 1, log[-3000:]
    failed = EventLog(queues).wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", timeout=10)
    assert failed.error is not None and failed.error.code == "photos_missing"

"""The sampler on the AWS backends: SQS queue depths and the auto scaling groups, against moto's HTTP server.

moto starts instances at once, so running always equals desired here; the alert on a lasting shortfall is covered
with sampled series in test_alerts.py.
"""

from __future__ import annotations

import boto3
from sqlalchemy import Engine

from bot.dashboard import sample_once
from cloud.fleet import aws
from cloud.queues import open_queues
from storage import metrics, migrate, open_engine, read_session
from storage.settings import load_settings


def test_sampler_reads_sqs_and_the_auto_scaling_groups(
    moto_endpoint: str, unique_name: str, tmp_path
) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24", AvailabilityZone="us-east-1a")["Subnet"][
        "SubnetId"
    ]
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/db.sqlite",
        blob_url=f"s3://{unique_name}/pg",
        queue_url="sqs://",
        queue_prefix=unique_name,
        aws_endpoint_url=moto_endpoint,
        fleet_name=unique_name,
        fleet_ami_id=ec2.describe_images()["Images"][0]["ImageId"],
        fleet_subnet_ids=[subnet],
        fleet_agent_image="registry.example.org/photogen/agent:0.1.0",
    )
    aws.bootstrap(settings)
    asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=moto_endpoint)
    asg.set_desired_capacity(AutoScalingGroupName=aws.names_from(settings).group("train"), DesiredCapacity=2)
    migrate(settings.database_url)
    engine: Engine = open_engine(settings.database_url)
    queues = open_queues(settings)
    try:
        for _ in range(3):
            queues.render.send("{}")
        sample_once(settings, engine, queues, asg=asg, now=1000.0)
        with read_session(engine) as s:
            assert metrics.latest(s, "queue_visible")["queue=render"] == (1000.0, 3.0)
            assert metrics.latest(s, "fleet_desired") == {
                "pool=train": (1000.0, 2.0),
                "pool=render": (1000.0, 0.0),
            }
            assert metrics.latest(s, "fleet_running")["pool=train"] == (1000.0, 2.0)
            assert metrics.latest(s, "fleet_busy")["pool=train"] == (1000.0, 0.0)
    finally:
        queues.close()
        engine.dispose()

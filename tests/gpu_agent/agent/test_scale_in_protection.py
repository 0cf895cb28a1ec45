"""A busy agent protects its EC2 instance from scale-in; an idle one gives it up. Against moto's server for Auto
Scaling and the fake IMDS for the instance id (a real EC2 instance cannot exist here)."""

from __future__ import annotations

import boto3

from gpu_agent.agent.protection import ScaleInProtection
from gpu_agent.agent.spot import ImdsClient
from storage.settings import load_settings
from tests.gpu_agent.fake_imds import FakeImds


def _group_with_one_instance(moto_endpoint: str, name: str) -> tuple[object, str]:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.3.1.0/24")["Subnet"]["SubnetId"]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": ami, "InstanceType": "g5.xlarge"}
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": name},
        VPCZoneIdentifier=subnet,
    )
    instance = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "Instances"
    ][0]
    return asg, instance["InstanceId"]


def _protected(asg, instance_id: str) -> bool:
    return asg.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"][0][
        "ProtectedFromScaleIn"
    ]


def test_busy_agent_protects_its_instance_and_idle_agent_releases_it(
    moto_endpoint: str, unique_name: str
) -> None:
    asg, instance_id = _group_with_one_instance(moto_endpoint, unique_name)
    imds = FakeImds(instance_id=instance_id).start()
    try:
        settings = load_settings(imds_url=imds.url, aws_endpoint_url=moto_endpoint)
        protection = ScaleInProtection(settings, ImdsClient(imds.url))
        assert protection.target() == (instance_id, unique_name)
        protection.set(True)
        assert _protected(asg, instance_id) is True
        calls = len(imds.requests)
        protection.set(True)  # no change of state: no call
        assert len(imds.requests) == calls
        protection.set(False)
        assert _protected(asg, instance_id) is False
    finally:
        imds.stop()


def test_off_ec2_or_outside_a_group_it_does_nothing(moto_endpoint: str) -> None:
    imds = FakeImds(instance_id="i-0123456789abcdef0").start()  # an instance in no group
    try:
        settings = load_settings(imds_url=imds.url, aws_endpoint_url=moto_endpoint)
        protection = ScaleInProtection(settings, ImdsClient(imds.url))
        protection.set(True)
        assert protection.target() is None and protection.protected is None
    finally:
        imds.stop()
    nowhere = load_settings(imds_url="http://127.0.0.1:9", aws_endpoint_url=moto_endpoint)  # nothing listens
    protection = ScaleInProtection(nowhere, ImdsClient(nowhere.imds_url, timeout_s=0.5))
    protection.set(True)  # logs, never raises
    assert protection.target() is None

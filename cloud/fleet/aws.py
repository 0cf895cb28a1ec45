"""`photogen aws bootstrap | status | teardown`: the AWS side of a Photogen fleet, idempotently.

bootstrap creates or updates: the S3 bucket (encryption, public access blocked, TLS-only bucket policy, lifecycle
rules), the SQS queues with dead-letter queues and redrive, the agents' IAM role + instance profile with least
privilege, the launch template (IMDSv2 required, encrypted root volume; user data starts the agent container)
and one auto scaling group per pool: training on spot with a mixed-instances policy (price-capacity-optimized,
capacity rebalance), renders on spot — or on-demand with a warm pool, since AWS refuses warm pools on groups with
spot instances. With --batch, AWS Batch for training too (cloud/fleet/batch.py).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from storage.settings import Settings

log = logging.getLogger(__name__)

PHOTO_TAG = {
    "Key": "photogen-kind",
    "Value": "training-photo",
}  # set by the S3 blob store on users/*/photos/*
CHECKPOINT_TAG = {"Key": "photogen-kind", "Value": "checkpoint"}  # on users/*/checkpoints/* (same reason)
PREVIEW_TAG = {"Key": "photogen-kind", "Value": "preview"}  # on users/*/previews/* (same reason)
AGENT_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@dataclass
class Names:
    fleet: str
    bucket: str
    blob_prefix: str
    queue_prefix: str

    @property
    def role(self) -> str:
        return f"{self.fleet}-agent"

    @property
    def instance_profile(self) -> str:
        return f"{self.fleet}-agent"

    @property
    def launch_template(self) -> str:
        return f"{self.fleet}-agent"

    def group(self, pool: str) -> str:
        return f"{self.fleet}-{pool}"

    def queue(self, kind: str) -> str:
        return f"{self.queue_prefix}-{kind}"


@dataclass
class Report:
    """What bootstrap did, one line per resource: created / updated / exists."""

    lines: list[str] = field(default_factory=list)

    def add(self, what: str, outcome: str) -> None:
        self.lines.append(f"{outcome:8} {what}")
        log.info("aws %s: %s", outcome, what)


def names_from(settings: Settings) -> Names:
    if not settings.blob_url.startswith("s3://"):
        raise SystemExit("photogen aws: BLOB_URL must be s3://BUCKET[/PREFIX] for an AWS fleet")
    bucket, _, prefix = settings.blob_url.removeprefix("s3://").partition("/")
    return Names(settings.fleet_name, bucket, prefix.strip("/"), settings.queue_prefix)


def client(settings: Settings, service: str, endpoint: str | None = None) -> Any:
    return boto3.client(
        service, region_name=settings.aws_region, endpoint_url=endpoint or settings.aws_endpoint_url
    )


def _prefixed(names: Names, path: str) -> str:
    return f"{names.blob_prefix}/{path}" if names.blob_prefix else path


# --- S3 --------------------------------------------------------------------------------------------------------


def lifecycle_rules(names: Names, settings: Settings) -> list[dict]:
    """Training photos expire after the retention period, previews after a day, checkpoints after a week (all
    matched by tag: S3 filters cannot wildcard users/*/); half-finished multipart uploads are cleaned up."""
    return [
        {
            "ID": "training-photos",
            "Status": "Enabled",
            "Filter": {"Tag": PHOTO_TAG},
            "Expiration": {"Days": settings.photo_retention_days},
        },
        {"ID": "previews", "Status": "Enabled", "Filter": {"Tag": PREVIEW_TAG}, "Expiration": {"Days": 1}},
        {
            "ID": "checkpoints",
            "Status": "Enabled",
            "Filter": {"Tag": CHECKPOINT_TAG},
            "Expiration": {"Days": 7},
        },
        {
            "ID": "abort-multipart",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


def ensure_bucket(settings: Settings, names: Names, report: Report) -> None:
    s3 = client(settings, "s3", settings.s3_endpoint_url)
    try:
        s3.head_bucket(Bucket=names.bucket)
        report.add(f"s3://{names.bucket}", "exists")
    except ClientError:
        kwargs: dict[str, Any] = {"Bucket": names.bucket}
        if settings.aws_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
        s3.create_bucket(**kwargs)
        report.add(f"s3://{names.bucket}", "created")
    s3.put_public_access_block(
        Bucket=names.bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=names.bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=names.bucket, LifecycleConfiguration={"Rules": lifecycle_rules(names, settings)}
    )
    s3.put_bucket_policy(Bucket=names.bucket, Policy=json.dumps(tls_only_bucket_policy(names)))
    report.add(f"s3://{names.bucket} encryption, public access block, lifecycle, TLS-only policy", "updated")


# --- SQS -------------------------------------------------------------------------------------------------------


def ensure_queues(settings: Settings, report: Report) -> dict[str, str]:
    """The train, render and events queues with their dead-letter queues and redrive (QUEUE_MAX_RECEIVES);
    returns queue ARNs by name."""
    from cloud.queues.sqs import ensure_queue

    sqs = client(settings, "sqs", settings.sqs_endpoint_url)
    arns = {}
    for kind in ("train", "render", "events"):
        name = f"{settings.queue_prefix}-{kind}"
        for url in ensure_queue(sqs, name, settings.queue_max_receives):
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
            arns[attrs["QueueArn"].rsplit(":", 1)[1]] = attrs["QueueArn"]
        report.add(
            f"sqs {name} (+ {name}-dlq, redrive after {settings.queue_max_receives} receives)", "updated"
        )
    return arns


# --- IAM -------------------------------------------------------------------------------------------------------


def agent_policy(names: Names, arns: dict[str, str], group_arns: list[str], image: str | None = None) -> dict:
    """Least privilege for an agent, action by action what agents do: consume train/render, publish events,
    dead-letter poison jobs; get/put members' files under users/ (never list them, delete only checkpoints);
    get/put the shared class images; read cancel/forget tombstones; find its own auto scaling group and protect
    its own instance from scale-in while busy; pull its own image when that lives in ECR."""
    bucket_arn = f"arn:aws:s3:::{names.bucket}"

    def objects(prefix: str) -> list[str]:
        return [f"{bucket_arn}/{_prefixed(names, prefix)}*"]

    consume = [arns[names.queue("train")], arns[names.queue("render")]]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConsumeJobs",
                "Effect": "Allow",
                "Resource": consume,
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
            },
            {
                "Sid": "PublishEvents",
                "Effect": "Allow",
                "Resource": [arns[names.queue("events")]],
                "Action": ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
            },
            {
                "Sid": "DeadLetterPoisonJobs",
                "Effect": "Allow",
                "Resource": [arns[f"{names.queue('train')}-dlq"], arns[f"{names.queue('render')}-dlq"]],
                "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
            },
            # Everything of a member lives under users/{id}/ (photos, LoRAs, renders, previews, checkpoints, done
            # markers: storage/keys.py), so forgetting a member is one prefix. Agents never delete there but
            # their own checkpoints (a cancelled job's outputs are deleted by the bot's sweep).
            {
                "Sid": "MemberFiles",
                "Effect": "Allow",
                "Resource": objects("users/"),
                "Action": ["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"],
            },
            {
                "Sid": "Checkpoints",
                "Effect": "Allow",
                "Resource": objects("users/*/checkpoints/"),
                "Action": ["s3:DeleteObject"],
            },
            # Prior-preservation images: the base model's, nobody's data, shared by every member.
            {
                "Sid": "ClassImages",
                "Effect": "Allow",
                "Resource": objects("shared/class-images/"),
                "Action": ["s3:GetObject", "s3:PutObject"],
            },
            # Cancel/forget tombstones (storage/tombstones.py): read-only; the list right below makes a missing
            # one a 404 rather than a 403.
            {
                "Sid": "ReadTombstones",
                "Effect": "Allow",
                "Resource": objects("control/"),
                "Action": ["s3:GetObject"],
            },
            {
                "Sid": "ListOwnPrefixes",
                "Effect": "Allow",
                "Resource": [bucket_arn],
                "Action": ["s3:ListBucket"],
                "Condition": {
                    "StringLike": {
                        "s3:prefix": [
                            _prefixed(names, p) + "*"
                            for p in ("users/*/checkpoints/", "control/", "shared/class-images/")
                        ]
                    }
                },
            },
            {
                "Sid": "FindOwnGroup",
                "Effect": "Allow",
                "Resource": ["*"],  # Describe* has no resource level
                "Action": ["autoscaling:DescribeAutoScalingInstances"],
            },
            {
                "Sid": "ScaleInProtection",
                "Effect": "Allow",
                "Resource": group_arns or ["*"],
                "Action": ["autoscaling:SetInstanceProtection"],
            },
            *ecr_pull_statements(image),
        ],
    }


_ECR_IMAGE = re.compile(
    r"(?P<registry>(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?)"
    r"/(?P<repository>[^:@]+)"
)


def ecr_pull_statements(image: str | None) -> list[dict]:
    """An ECR image: the right to log in (no resource level) and to pull that one repository, nothing else."""
    match = _ECR_IMAGE.match(image or "")
    if match is None:
        return []
    repository = f"arn:aws:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
    return [
        {"Sid": "EcrLogin", "Effect": "Allow", "Resource": ["*"], "Action": ["ecr:GetAuthorizationToken"]},
        {
            "Sid": "PullAgentImage",
            "Effect": "Allow",
            "Resource": [repository],
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
        },
    ]


def tls_only_bucket_policy(names: Names) -> dict:
    """Refuse any request to the bucket that does not come over TLS."""
    bucket_arn = f"arn:aws:s3:::{names.bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def ensure_role(settings: Settings, names: Names, policy: dict, report: Report) -> str:
    iam = client(settings, "iam")
    try:
        iam.get_role(RoleName=names.role)
        report.add(f"iam role {names.role}", "exists")
    except ClientError:
        iam.create_role(
            RoleName=names.role,
            AssumeRolePolicyDocument=json.dumps(AGENT_TRUST),
            Description="Photogen GPU agent",
        )
        report.add(f"iam role {names.role}", "created")
    iam.put_role_policy(
        RoleName=names.role, PolicyName=f"{names.fleet}-agent", PolicyDocument=json.dumps(policy)
    )
    report.add(f"iam policy {names.fleet}-agent", "updated")
    try:
        profile = iam.get_instance_profile(InstanceProfileName=names.instance_profile)["InstanceProfile"]
        report.add(f"instance profile {names.instance_profile}", "exists")
    except ClientError:
        profile = iam.create_instance_profile(InstanceProfileName=names.instance_profile)["InstanceProfile"]
        report.add(f"instance profile {names.instance_profile}", "created")
    if not any(r["RoleName"] == names.role for r in profile.get("Roles", [])):
        iam.add_role_to_instance_profile(InstanceProfileName=names.instance_profile, RoleName=names.role)
    return profile["Arn"]


# --- EC2 + Auto Scaling ----------------------------------------------------------------------------------------

AGENT_ENV = (
    "QUEUE_URL",
    "QUEUE_PREFIX",
    "BLOB_URL",
    "AWS_REGION",
    "BASE_MODEL",
    "AGENT_LEASE_S",
    "AGENT_HEARTBEAT_S",
    "QUEUE_MAX_RECEIVES",
)


def user_data(settings: Settings) -> str:
    """Boot script: run the agent container on the GPU; IMDS stays reachable for spot notices."""
    values = {name: str(getattr(settings, name.lower())) for name in AGENT_ENV}
    env = " ".join(f"-e {k}={json.dumps(v)}" for k, v in values.items())
    ecr = _ECR_IMAGE.match(settings.fleet_agent_image or "")
    login: list[str] = []
    if ecr:  # an ECR image: log in with the instance's role first (the AMI has the AWS CLI)
        login.append(
            f"aws ecr get-login-password --region {ecr['region']} | docker login --username AWS "
            f"--password-stdin {ecr['registry']}"
        )
    return "\n".join(
        [
            "#!/bin/bash",
            "set -euo pipefail",
            *login,
            f"docker pull {settings.fleet_agent_image}",
            f"docker run -d --restart unless-stopped --gpus all --name photogen-agent {env} "
            f"-e DEVICE=cuda -v /opt/photogen:/data {settings.fleet_agent_image} photogen agent",
            "",
        ]
    )


def encrypted_root_volume(ec2: Any, ami_id: str) -> dict:
    """The AMI's root volume, encrypted (the account's default EBS key) and deleted with the instance: it holds
    members' photos and LoRAs while a job runs."""
    try:
        image = ec2.describe_images(ImageIds=[ami_id])["Images"][0]
    except (ClientError, IndexError):
        raise SystemExit(
            f"photogen aws: FLEET_AMI_ID {ami_id} is not an image this account can launch"
        ) from None
    device = image.get("RootDeviceName") or "/dev/sda1"
    ebs: dict[str, Any] = {"Encrypted": True, "DeleteOnTermination": True, "VolumeType": "gp3"}
    for mapping in image.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == device and mapping.get("Ebs", {}).get("VolumeSize"):
            ebs["VolumeSize"] = mapping["Ebs"]["VolumeSize"]  # the image's own size (its snapshot's)
    return {"DeviceName": device, "Ebs": ebs}


def ensure_launch_template(settings: Settings, names: Names, profile_arn: str, report: Report) -> None:
    if not settings.fleet_ami_id:
        raise SystemExit(
            "photogen aws: set FLEET_AMI_ID to a GPU AMI with Docker and the NVIDIA container runtime"
        )
    ec2 = client(settings, "ec2")
    data = {
        "ImageId": settings.fleet_ami_id,
        "BlockDeviceMappings": [encrypted_root_volume(ec2, settings.fleet_ami_id)],
        "IamInstanceProfile": {"Arn": profile_arn},
        "UserData": base64.b64encode(user_data(settings).encode()).decode(),
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 2,
        },
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "photogen-fleet", "Value": names.fleet}]}
        ],
    }
    try:
        ec2.describe_launch_templates(LaunchTemplateNames=[names.launch_template])
    except ClientError:
        ec2.create_launch_template(LaunchTemplateName=names.launch_template, LaunchTemplateData=data)
        report.add(f"launch template {names.launch_template}", "created")
        return
    version = ec2.create_launch_template_version(
        LaunchTemplateName=names.launch_template, LaunchTemplateData=data
    )
    number = str(version["LaunchTemplateVersion"]["VersionNumber"])
    ec2.modify_launch_template(LaunchTemplateName=names.launch_template, DefaultVersion=number)
    report.add(f"launch template {names.launch_template} (version {number})", "updated")


def group_spec(settings: Settings, names: Names, pool: str) -> dict:
    types = settings.fleet_train_instance_types if pool == "train" else settings.fleet_render_instance_types
    on_demand = pool == "render" and settings.fleet_render_on_demand
    spec: dict[str, Any] = {
        "AutoScalingGroupName": names.group(pool),
        "MinSize": 0,
        "MaxSize": settings.fleet_train_max if pool == "train" else settings.fleet_render_max,
        "VPCZoneIdentifier": ",".join(settings.fleet_subnet_ids),
        "NewInstancesProtectedFromScaleIn": False,
        "CapacityRebalance": not on_demand,
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateName": names.launch_template,
                    "Version": "$Latest",
                },
                "Overrides": [{"InstanceType": t} for t in types],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 0,
                "OnDemandPercentageAboveBaseCapacity": 100 if on_demand else 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
            },
        },
        "Tags": [{"Key": "photogen-pool", "Value": pool, "PropagateAtLaunch": True}],
    }
    return spec


def ensure_groups(settings: Settings, names: Names, report: Report) -> None:
    if not settings.fleet_subnet_ids:
        raise SystemExit("photogen aws: set FLEET_SUBNET_IDS to the subnets agents may launch into")
    asg = client(settings, "autoscaling")
    for pool in ("train", "render"):
        spec = group_spec(settings, names, pool)
        existing = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[spec["AutoScalingGroupName"]])
        if existing["AutoScalingGroups"]:
            update = {k: v for k, v in spec.items() if k != "Tags"}
            asg.update_auto_scaling_group(**update)
            report.add(f"auto scaling group {spec['AutoScalingGroupName']}", "updated")
        else:
            asg.create_auto_scaling_group(DesiredCapacity=0, **spec)
            report.add(f"auto scaling group {spec['AutoScalingGroupName']}", "created")
        # a terminating agent gets time to checkpoint and release its job (same budget as a spot notice)
        asg.put_lifecycle_hook(
            LifecycleHookName=f"{names.fleet}-{pool}-drain",
            AutoScalingGroupName=spec["AutoScalingGroupName"],
            LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
            HeartbeatTimeout=120,
            DefaultResult="CONTINUE",
        )
        if pool == "render" and settings.fleet_render_on_demand:
            asg.put_warm_pool(
                AutoScalingGroupName=spec["AutoScalingGroupName"], PoolState="Stopped", MinSize=1
            )
            report.add(f"warm pool for {spec['AutoScalingGroupName']}", "updated")


def bootstrap(settings: Settings, *, batch: bool = False) -> Report:
    """Everything a fleet needs; with ``batch`` (or FLEET_TRAIN_BACKEND=batch) also AWS Batch for training."""
    names = names_from(settings)
    if not settings.fleet_agent_image:  # before anything is created: nothing half-built
        raise SystemExit(
            "photogen aws: set FLEET_AGENT_IMAGE to the agent image you pushed "
            "(docs/SELF_HOSTING.md, 'The agent image the AWS fleet runs')"
        )
    report = Report()
    ensure_bucket(settings, names, report)
    arns = ensure_queues(settings, report)
    account_groups = [
        f"arn:aws:autoscaling:{settings.aws_region}:*:autoScalingGroup:*:autoScalingGroupName/{names.group(p)}"
        for p in ("train", "render")
    ]
    policy = agent_policy(names, arns, account_groups, settings.fleet_agent_image)
    profile_arn = ensure_role(settings, names, policy, report)
    ensure_launch_template(settings, names, profile_arn, report)
    ensure_groups(settings, names, report)
    if batch or settings.fleet_train_backend == "batch":
        from cloud.fleet.batch import ensure_batch

        ensure_batch(settings, names, agent_policy(names, arns, account_groups), report)
    return report


def teardown(settings: Settings) -> Report:
    """Remove compute and IAM. The bucket and queues hold members' data: they are kept, and said so."""
    names = names_from(settings)
    report = Report()
    asg = client(settings, "autoscaling")
    for pool in ("train", "render"):
        try:
            asg.delete_auto_scaling_group(AutoScalingGroupName=names.group(pool), ForceDelete=True)
            report.add(f"auto scaling group {names.group(pool)}", "deleted")
        except ClientError:
            report.add(f"auto scaling group {names.group(pool)}", "absent")
    ec2 = client(settings, "ec2")
    try:
        ec2.delete_launch_template(LaunchTemplateName=names.launch_template)
        report.add(f"launch template {names.launch_template}", "deleted")
    except ClientError:
        report.add(f"launch template {names.launch_template}", "absent")
    iam = client(settings, "iam")
    try:
        iam.remove_role_from_instance_profile(InstanceProfileName=names.instance_profile, RoleName=names.role)
        iam.delete_instance_profile(InstanceProfileName=names.instance_profile)
        report.add(f"instance profile {names.instance_profile}", "deleted")
    except ClientError:
        report.add(f"instance profile {names.instance_profile}", "absent")
    try:
        iam.delete_role_policy(RoleName=names.role, PolicyName=f"{names.fleet}-agent")
        iam.delete_role(RoleName=names.role)
        report.add(f"iam role {names.role}", "deleted")
    except ClientError:
        report.add(f"iam role {names.role}", "absent")
    from cloud.fleet.batch import teardown_batch

    teardown_batch(settings, report)
    report.add(f"s3://{names.bucket} and the SQS queues (members' data; delete them by hand)", "kept")
    return report

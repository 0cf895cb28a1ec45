"""Scale-in protection: a busy agent protects its own EC2 instance, an idle one gives the protection up.

The autoscaler never scales a pool below its busy agents (it counts protected instances), and AWS never picks a
protected instance when the desired capacity drops. Off EC2, or on an instance outside an auto scaling group,
this does nothing. A failure is logged, never raised: a job must not die because the Auto Scaling API hiccups.
"""

from __future__ import annotations

import logging
from typing import Any

from gpu_agent.agent.spot import ImdsClient, imds_url_for
from storage.settings import Settings

log = logging.getLogger(__name__)


class ScaleInProtection:
    def __init__(self, settings: Settings, imds: ImdsClient | None = None, client: Any = None) -> None:
        self.settings = settings
        url = imds_url_for(settings)
        self.imds: ImdsClient | None = imds or (ImdsClient(url) if url else None)
        self._client = client
        self._target: tuple[str, str] | None = None
        self._looked_up = False
        self.protected: bool | None = None

    def _autoscaling(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "autoscaling",
                region_name=self.settings.aws_region,
                endpoint_url=self.settings.aws_endpoint_url,
            )
        return self._client

    def target(self) -> tuple[str, str] | None:
        """(instance id, group name), looked up once; None off EC2 or outside a group."""
        if self._looked_up:
            return self._target
        self._looked_up = True
        if self.imds is None:  # not on EC2 (IMDS_MODE, detection): nothing to protect
            return None
        try:
            instance_id = self.imds.get("instance-id")
        except Exception:
            log.info("no instance metadata at %s: scale-in protection off", self.settings.imds_url)
            return None
        if not instance_id:
            return None
        try:
            found = self._autoscaling().describe_auto_scaling_instances(InstanceIds=[instance_id])
        except Exception:
            log.warning(
                "could not look up the auto scaling group of %s; scale-in protection off",
                instance_id,
                exc_info=True,
            )
            return None
        groups = found.get("AutoScalingInstances", [])
        if groups:
            self._target = (instance_id, groups[0]["AutoScalingGroupName"])
            log.info("instance %s in group %s: busy agent protects it from scale-in", *self._target)
        return self._target

    def set(self, busy: bool) -> None:
        if not self.settings.agent_scale_in_protection or self.protected is busy:
            return
        target = self.target()
        if target is None:
            return
        instance_id, group = target
        try:
            self._autoscaling().set_instance_protection(
                InstanceIds=[instance_id], AutoScalingGroupName=group, ProtectedFromScaleIn=busy
            )
            self.protected = busy
        except Exception:
            log.warning(
                "could not %s scale-in protection of %s",
                "set" if busy else "clear",
                instance_id,
                exc_info=True,
            )

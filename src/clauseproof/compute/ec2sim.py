"""The simulated cloud of the embedded default: moto's EC2 server on loopback, driven with boto3.

moto has no boot latency and no hosts: results against it show that the harness's timing,
failure and clean-up logic work, and are labelled "simulated — not evidence" everywhere.
boto3 is used for this path because Libcloud's EC2 driver needs changes to talk to moto
(signature version 4, and moto's XML namespace lacks the trailing slash Libcloud expects).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from clauseproof.compute.base import (
    GONE,
    OTHER,
    PENDING,
    RUNNING,
    STOPPED,
    TAG,
    CloudError,
    ComputeDriver,
    Vm,
)

STATES = {
    "pending": PENDING,
    "running": RUNNING,
    "stopping": OTHER,
    "stopped": STOPPED,
    "shutting-down": OTHER,
    "terminated": GONE,
}
REGION = "us-east-1"


class SimulatedEC2(ComputeDriver):
    name = "simulated EC2 (moto)"
    simulated = True

    def __init__(self, instance_type: str = "t2.micro") -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        from clauseproof.targets.host.folders import free_port

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.client: Any = boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=f"http://127.0.0.1:{self.port}",
            aws_access_key_id="simulated",
            aws_secret_access_key="simulated",
        )
        self.instance_type = instance_type
        images = self.client.describe_images(Owners=["amazon"])["Images"] or self.client.describe_images()["Images"]
        self.image = sorted(i["ImageId"] for i in images)[0]

    def create(self, run_id: str, names: list[str], group: str | None = None) -> list[tuple[str, str, float]]:
        from botocore.exceptions import ClientError

        try:
            resp = self.client.run_instances(
                ImageId=self.image,
                InstanceType=self.instance_type,
                MinCount=len(names),
                MaxCount=len(names),
                TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": run_id}]}],
            )
        except ClientError as exc:
            raise CloudError(str(exc)) from None
        accepted = time.perf_counter()
        ids = [i["InstanceId"] for i in resp["Instances"]]
        # one call made them all; naming each VM (a tag per VM) is part of creating it, so it stays timed
        for vid, name in zip(ids, names, strict=False):
            self.client.create_tags(Resources=[vid], Tags=[{"Key": "Name", "Value": name}])
        return [(n, vid, accepted) for n, vid in zip(names, ids, strict=False)]

    def list_vms(self, run_id: str) -> list[Vm]:
        out = []
        pages = self.client.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG}", "Values": [run_id]}]
        )
        for page in pages:
            for res in page["Reservations"]:
                for i in res["Instances"]:
                    name = next((t["Value"] for t in i.get("Tags", []) if t["Key"] == "Name"), i["InstanceId"])
                    out.append(
                        Vm(
                            i["InstanceId"],
                            name,
                            STATES.get(i["State"]["Name"], OTHER),
                            host=i.get("Placement", {}).get("HostId"),
                            address=i.get("PrivateIpAddress"),
                        )
                    )
        return out

    def _call(self, fn: Any, ids: list[str]) -> dict[str, str]:
        from botocore.exceptions import ClientError

        try:
            fn(InstanceIds=ids)
        except ClientError as exc:
            return dict.fromkeys(ids, str(exc))
        return {}

    def act(self, ids: list[str], action: str) -> dict[str, str]:
        fn = {
            "start": self.client.start_instances,
            "stop": self.client.stop_instances,
            "reboot": self.client.reboot_instances,
        }[action]
        return self._call(fn, ids)

    def delete(self, ids: list[str]) -> dict[str, str]:
        return self._call(self.client.terminate_instances, ids) if ids else {}

    def leftovers(self, run_id: str, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if not ids:
            return out
        vols = self.client.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids}])["Volumes"]
        enis = self.client.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": ids}])[
            "NetworkInterfaces"
        ]
        out["volumes"] = [v["VolumeId"] for v in vols]
        out["network interfaces"] = [e["NetworkInterfaceId"] for e in enis]
        out["vms"] = [v.name for v in self.list_vms(run_id) if v.state != GONE]
        return out

    def describe(self) -> dict[str, Any]:
        import moto

        return {
            "driver": self.name,
            "simulated": True,
            "endpoint": f"http://127.0.0.1:{self.port}",
            "moto": moto.__version__,
            "region": REGION,
            "instance_type": self.instance_type,
            "image": self.image,
            "note": "moto has no boot latency and no hosts: simulated — not evidence",
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()

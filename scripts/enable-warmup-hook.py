#!/usr/bin/env python3
"""Enables AgentCore Platform V2's warmup build hook on a runtime: the one call CloudFormation
cannot make yet (AWS::BedrockAgentCore::Runtime has PlatformVersion but no hooks configuration
in the schema cfn-lint 1.58 ships). See docs/operations.md, "Platform V2 and the warmup hook",
and docs/decisions/0907.

    UpdateAgentRuntime(agentRuntimeId, <the runtime's current settings>,
                       hooksConfiguration={"build": {"warmup": {"action": {"httpPost":
                           {"path": "/warmup", "port": 8080}}}}})

UpdateAgentRuntime replaces the runtime's settings and makes a new runtime version, so the
request carries every setting the runtime has now (read with GetAgentRuntime) and changes only
the hooks. Nothing is sent when the hook is already configured: a new version would make the
pool drain and refill for nothing. The client token is derived from the runtime's current
version and the hook, so an SDK retry of a call whose answer was lost cannot make a second
version. A V1 runtime is refused here (AgentCore refuses hooks on V1).

Usage: enable-warmup-hook.py (--runtime-arn ARN | --samconfig FILE) [--path /warmup]
       [--port 8080] [--dry-run] [--endpoint-url URL] [--wait-secs 300]
--samconfig reads the stack name and region `sam deploy --guided` saved, then the stack's
AgentRuntimeArn output; a stack whose PlatformVersion parameter is V1 is skipped.
Needs boto3 with a botocore that knows hooksConfiguration (the sam venv of `make deploy` has one).
"""

import argparse
import hashlib
import json
import sys
import time
import tomllib

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# Settings GetAgentRuntime returns that UpdateAgentRuntime does not take back.
READ_ONLY = {"agentRuntimeArn", "agentRuntimeName", "agentRuntimeVersion", "createdAt",
             "lastUpdatedAt", "status", "failureReason", "workloadIdentityDetails",
             "ResponseMetadata"}


def parse_arn(arn):
    """(region, runtime id) of arn:aws:bedrock-agentcore:<region>:<account>:runtime/<id>."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "bedrock-agentcore" or not parts[5].startswith("runtime/"):
        raise ValueError(f"not an AgentCore runtime ARN: {arn}")
    runtime_id = parts[5][len("runtime/"):]
    if not runtime_id or "/" in runtime_id:
        raise ValueError(f"not an AgentCore runtime ARN: {arn}")
    return parts[3], runtime_id


def wanted_hooks(path, port):
    return {"build": {"warmup": {"action": {"httpPost": {"path": path, "port": port}}}}}


def update_request(client, runtime, runtime_id, hooks):
    """The UpdateAgentRuntime input: the runtime's current settings, the hooks replaced."""
    members = client.meta.service_model.operation_model("UpdateAgentRuntime").input_shape.members
    if "hooksConfiguration" not in members:
        raise SystemExit("this botocore does not know UpdateAgentRuntime.hooksConfiguration; upgrade boto3")
    # Empty values are settings the runtime does not have (the API refuses an empty description).
    request = {k: v for k, v in runtime.items()
               if k in members and k not in READ_ONLY and v not in (None, "", {}, [])}
    request["agentRuntimeId"] = runtime_id
    request["hooksConfiguration"] = hooks
    if "clientToken" in members:
        seed = json.dumps([runtime_id, runtime.get("agentRuntimeVersion"), hooks], sort_keys=True)
        request["clientToken"] = hashlib.sha256(seed.encode()).hexdigest()[:64]
    return request


def wait_ready(client, runtime_id, wait_secs):
    """Polls until the new version is READY (the hook ran and succeeded) or fails; bounded."""
    deadline = time.monotonic() + wait_secs
    while time.monotonic() < deadline:
        runtime = client.get_agent_runtime(agentRuntimeId=runtime_id)
        status = runtime.get("status", "")
        if status == "READY":
            return runtime
        if status.endswith("FAILED"):
            raise SystemExit(f"runtime {runtime_id} is {status}: {runtime.get('failureReason', '')} "
                             "(a failing warmup hook fails the build; the previous version keeps serving)")
        time.sleep(5)
    raise SystemExit(f"runtime {runtime_id} not READY after {wait_secs} s; check it with GetAgentRuntime")


def runtime_of_stack(samconfig):
    """(runtime ARN, or None when the stack runs V1) of the stack a samconfig file deploys."""
    with open(samconfig, "rb") as file:
        deploy = tomllib.load(file)["default"]["deploy"]["parameters"]
    stack_name, region = deploy["stack_name"], deploy.get("region")
    stack = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack_name)["Stacks"][0]
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
    if parameters.get("PlatformVersion", "V2") != "V2":
        print(f"{stack_name}: PlatformVersion {parameters['PlatformVersion']}, no warmup hook (V2 only)")
        return None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if "AgentRuntimeArn" not in outputs:
        raise SystemExit(f"{stack_name} has no AgentRuntimeArn output")
    return outputs["AgentRuntimeArn"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--runtime-arn")
    which.add_argument("--samconfig", help="the samconfig file of `make deploy` / `make deploy-batch`")
    parser.add_argument("--path", default="/warmup")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--endpoint-url", default=None, help="e.g. a local moto, for tests")
    parser.add_argument("--dry-run", action="store_true", help="print the request, send nothing")
    parser.add_argument("--wait-secs", type=int, default=300)
    args = parser.parse_args()
    try:
        arn = args.runtime_arn or runtime_of_stack(args.samconfig)
    except (ClientError, BotoCoreError, OSError, KeyError) as error:
        raise SystemExit(f"enable-warmup-hook: cannot read the stack of {args.samconfig}: {error!r}")
    if arn is None:
        return
    try:
        region, runtime_id = parse_arn(arn)
    except ValueError as error:
        raise SystemExit(str(error))
    client = boto3.client("bedrock-agentcore-control", region_name=region, endpoint_url=args.endpoint_url)
    hooks = wanted_hooks(args.path, args.port)
    try:
        runtime = client.get_agent_runtime(agentRuntimeId=runtime_id)
        platform = runtime.get("platformVersion")
        if platform is not None and platform != "V2":
            raise SystemExit(f"runtime {runtime_id} is on platform {platform}: hooks need V2 (PlatformVersion=V2)")
        if runtime.get("hooksConfiguration") == hooks:
            print(f"warmup hook already enabled on {runtime_id} (version {runtime.get('agentRuntimeVersion')}); nothing sent")
            return
        request = update_request(client, runtime, runtime_id, hooks)
        if args.dry_run:
            print(json.dumps(request, indent=2, default=str))
            return
        answer = client.update_agent_runtime(**request)
        print(f"warmup hook requested on {runtime_id}: version {answer.get('agentRuntimeVersion')}, "
              f"status {answer.get('status')}")
        ready = wait_ready(client, runtime_id, args.wait_secs)
        print(f"runtime {runtime_id} READY at version {ready.get('agentRuntimeVersion')}")
    except (ClientError, BotoCoreError) as error:
        raise SystemExit(f"enable-warmup-hook: {error}")


if __name__ == "__main__":
    sys.exit(main())

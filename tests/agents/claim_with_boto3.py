"""A team's own client, as README's Python quick start has it: claim a warm session from the
pool's get-session function with boto3, then call the agent on it with
`invoke_agent_runtime`, passing the user as the runtime user ID.

Endpoints come from the standard AWS environment (`AWS_ENDPOINT_URL_LAMBDA`,
`AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`, ...), so the same code runs against AWS or the local
stack. Prints one JSON line: the session, where it came from, and the agent's answer.
"""

import json
import os

import boto3


def claim_session(lambda_client, function_name, user_id=None):
    """One warm session ID from get-session (source "pool"), or a fresh one if it is empty;
    with a user (pools with leases), that user's live session ("reused") if there is one."""
    request = {"userId": user_id} if user_id else {}
    answer = lambda_client.invoke(FunctionName=function_name, Payload=json.dumps(request).encode())
    body = json.loads(answer["Payload"].read())
    if "FunctionError" in answer:
        raise RuntimeError(f"get-session failed: {body}")
    return body


def ask(agentcore, runtime_arn, claimed, prompt):
    # The holder, when the answer names one, goes to the agent as the runtime user ID.
    as_user = {"runtimeUserId": claimed["userId"]} if "userId" in claimed else {}
    response = agentcore.invoke_agent_runtime(
        agentRuntimeArn=runtime_arn,
        runtimeSessionId=claimed["sessionId"],
        payload=json.dumps({"prompt": prompt}).encode(),
        **as_user,
    )
    return json.loads(response["response"].read())


def main():
    claimed = claim_session(
        boto3.client("lambda"),
        os.environ.get("GET_SESSION_FUNCTION", "get-session"),
        os.environ.get("WARMPOOL_USER_ID"),
    )
    answer = ask(boto3.client("bedrock-agentcore"), os.environ["AGENT_RUNTIME_ARN"], claimed, "hello")
    print(json.dumps({"sessionId": claimed["sessionId"], "source": claimed["source"], "answer": answer}))


if __name__ == "__main__":
    main()

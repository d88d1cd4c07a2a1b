"""The Python comparison for the cold-start benchmark: what a boto3 API handler does at init
(the DynamoDB and Step Functions clients the envplane API builds), then the Lambda Runtime API
loop by hand (no runtime interface client is installed here), answering each event after one
DynamoDB GetItem, as the Rust API does for GET /v1/environments/{name}."""
import json
import os
import urllib.request

import boto3

session = boto3.session.Session()
dynamodb = session.client("dynamodb")
sfn = session.client("stepfunctions")
table = os.environ["TABLE_NAME"]
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation"

while True:
    with urllib.request.urlopen(api + "/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.load(response)
    name = event.get("rawPath", "/").rsplit("/", 1)[-1]
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "ENV#" + name}, "sk": {"S": "ENV"}})
    status = 200 if "Item" in item else 404
    body = json.dumps({"statusCode": status, "body": "{}"}).encode()
    urllib.request.urlopen(urllib.request.Request(api + "/" + request_id + "/response", data=body, method="POST")).read()

"""Least privilege, checked: every statement of every function's policy in template.yaml is read,
and any action that creates, changes or deletes something on EC2, EKS or ELBv2 must be scoped:
never on Resource "*", always under a condition on this stack's tag (in the request for
creates, on the resource for changes and deletes; EC2 tags only while creating), and EKS
actions only on the names envplane gives (`*-eks`, `*-frontend`, `*-backend`). Other services'
writes must not be on "*" either. Prints every statement it checked; exits 1 on a violation.

Run with cfn-lint's Python (it decodes the intrinsic functions): scripts/test does.
"""

import sys

from cfnlint.decode import decode

READ_PREFIXES = ("Describe", "List", "Get")
TAG_CONDITIONS = (
    "aws:RequestTag/envplane:stack",
    "aws:ResourceTag/envplane:stack",
    "ec2:CreateAction",
)
# The database host boots from the distribution's public image, which has no tags to check.
UNTAGGABLE = {("ec2:RunInstances", "image/*")}
EKS_NAMES = ("cluster/*-eks", "nodegroup/*-eks/")
# Actions AWS authorizes on no resource at all: a new Route 53 zone has no ARN to scope and no
# tag condition (envplane tags each zone it makes, and deletes only zones carrying its tag).
UNSCOPABLE = {"route53:CreateHostedZone"}


def as_list(value):
    return value if isinstance(value, list) else [value]


def text(resource):
    """A resource ARN as written: a plain string or the template of a Fn::Sub."""
    if isinstance(resource, str):
        return resource
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return repr(dict(resource)) if isinstance(resource, dict) else str(resource)


def condition_keys(statement):
    keys = set()
    for operator in (statement.get("Condition") or {}).values():
        keys.update(operator.keys())
    return keys


def violations(where, statement):
    """What is wrong with one statement, as lines."""
    out = []
    if statement.get("Effect") != "Allow":
        return out
    actions = [str(a) for a in as_list(statement.get("Action", []))]
    resources = [text(r) for r in as_list(statement.get("Resource", []))]
    keys = condition_keys(statement)
    for action in actions:
        service, _, name = action.partition(":")
        if name.startswith(READ_PREFIXES) or action in UNSCOPABLE:
            continue
        if "*" in resources:
            out.append(f"{where}: {action} on Resource \"*\"")
            continue
        if service not in ("ec2", "eks", "elasticloadbalancing"):
            continue
        if all((action, r.rsplit(":", 1)[-1]) in UNTAGGABLE for r in resources):
            continue
        if not keys.intersection(TAG_CONDITIONS):
            out.append(f"{where}: {action} without a condition on envplane:stack")
        if service == "eks":
            loose = [r for r in resources if not any(n in r for n in EKS_NAMES)]
            if loose:
                out.append(f"{where}: {action} on EKS resources not named by envplane: {loose}")
    return out


def statements(template):
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for policy in as_list(properties.get("Policies", [])):
            if isinstance(policy, dict) and "Statement" in policy:
                for statement in policy["Statement"]:
                    yield name, statement
            if isinstance(policy, dict) and "PolicyDocument" in policy:
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield name, statement


def self_test():
    """The checker must catch what it is for, or it proves nothing."""
    bad = [
        {"Effect": "Allow", "Action": ["ec2:DeleteVpc"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["ec2:TerminateInstances"],
         "Resource": "arn:aws:ec2:us-east-1:1:instance/*"},
        {"Effect": "Allow", "Action": ["eks:DeleteCluster"],
         "Resource": "arn:aws:eks:us-east-1:1:cluster/*",
         "Condition": {"StringEquals": {"aws:ResourceTag/envplane:stack": "x"}}},
        {"Effect": "Allow", "Action": ["states:StopExecution"], "Resource": "*"},
    ]
    for statement in bad:
        assert violations("self-test", statement), f"not caught: {statement}"
    good = {"Effect": "Allow", "Action": ["ec2:DeleteVpc", "ec2:DescribeVpcs"],
            "Resource": "arn:aws:ec2:us-east-1:1:vpc/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/envplane:stack": "x"}}}
    assert not violations("self-test", good), "a scoped statement was refused"


def main(path):
    self_test()
    template, problems = decode(path)
    if problems:
        print(f"iam: {path} does not decode: {problems}")
        return 1
    failed = []
    checked = 0
    for function, statement in statements(template):
        checked += 1
        wrong = violations(f"{function}/{statement.get('Sid', '?')}", statement)
        failed.extend(wrong)
        actions = as_list(statement.get("Action", []))
        scope = ", ".join(sorted(condition_keys(statement))) or "no condition"
        verdict = "VIOLATION" if wrong else "ok"
        print(f"iam: {function}/{statement.get('Sid', '?')}: {len(actions)} actions, {scope}: {verdict}")
    for line in failed:
        print(f"iam: {line}")
    print(f"iam: {checked} statements checked, {len(failed)} violations")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))

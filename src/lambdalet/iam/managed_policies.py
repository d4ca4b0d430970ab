"""The AWS-managed policies every account can attach (documents as AWS publishes them, abridged
to the services lambdalet serves); iam/directory.py installs them at start."""
from __future__ import annotations

from lambdalet.iam.policy import ADMINISTRATOR_ACCESS

ADMIN_POLICY_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"

AWS_MANAGED: dict[str, tuple[str, dict, str]] = {
    "AdministratorAccess": ("/", ADMINISTRATOR_ACCESS, "Provides full access to AWS services and resources."),
    "IAMFullAccess": ("/", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:*", "organizations:DescribeAccount", "organizations:DescribeOrganization",
                                       "organizations:DescribeOrganizationalUnit", "organizations:DescribePolicy",
                                       "organizations:ListChildren", "organizations:ListParents",
                                       "organizations:ListPoliciesForTarget", "organizations:ListRoots",
                                       "organizations:ListPolicies", "organizations:ListTargetsForPolicy"],
         "Resource": "*"}]}, "Provides full access to IAM via the AWS Management Console."),
    "ReadOnlyAccess": ("/", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["lambda:Get*", "lambda:List*", "iam:Get*", "iam:List*", "sqs:Get*",
                                       "sqs:List*", "logs:Describe*", "logs:Get*", "logs:FilterLogEvents",
                                       "cloudtrail:LookupEvents", "cloudtrail:Get*", "cloudtrail:Describe*"],
         "Resource": "*"}]}, "Provides read-only access to AWS services and resources."),
    "AWSLambda_FullAccess": ("/", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["lambda:*", "logs:DescribeLogGroups", "logs:DescribeLogStreams",
                                       "logs:GetLogEvents", "logs:FilterLogEvents", "logs:StartLiveTail",
                                       "logs:StopLiveTail", "iam:ListRoles", "iam:GetRole", "iam:GetPolicy",
                                       "iam:GetPolicyVersion", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
                                       "iam:ListRolePolicies", "sqs:ListQueues", "sqs:GetQueueAttributes"],
         "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
         "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}}]},
        "Grants full access to AWS Lambda service, AWS Lambda console features, and other related AWS services."),
    "AWSLambda_ReadOnlyAccess": ("/", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["lambda:Get*", "lambda:List*", "logs:DescribeLogGroups",
                                       "logs:DescribeLogStreams", "logs:GetLogEvents", "logs:FilterLogEvents",
                                       "iam:GetPolicy", "iam:GetPolicyVersion", "iam:GetRole", "iam:GetRolePolicy",
                                       "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:ListRoles"],
         "Resource": "*"}]}, "Grants read-only access to AWS Lambda service, AWS Lambda console features, and "
                             "other related AWS services."),
    "AWSLambdaBasicExecutionRole": ("/service-role/", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"}]}, "Provides write permissions to CloudWatch Logs."),
    "AWSLambdaRole": ("/service-role/", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": ["*"]}]},
        "Default policy for AWS Lambda service role."),
    "AWSLambdaSQSQueueExecutionRole": ("/service-role/", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                       "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"}]}, "Provides receive message, delete message, and read attribute access to SQS queues, "
                             "and write permissions to CloudWatch logs."),
}

"""Names shared by the Lambdas, the CDK app and the tests: events, environment variables, tags."""

EVENT_SOURCE = "lifeline"
PROVISION_REQUEST_DETAIL_TYPE = "Lifeline Provision Request"
READY_DETAIL_TYPE = "Lifeline Offline Access Ready"
FAILED_DETAIL_TYPE = "Lifeline Offline Access Failed"

CLOUDTRAIL_DETAIL_TYPE = "AWS API Call via CloudTrail"
CLOUDTRAIL_SOURCE = "aws.eks"
CLOUDTRAIL_EVENT_SOURCE = "eks.amazonaws.com"
CREATE_CLUSTER_EVENT_NAME = "CreateCluster"

ENV_ALLOWED_OUTPOST_ARNS = "LIFELINE_ALLOWED_OUTPOST_ARNS"
ENV_POLL_INTERVAL_SECONDS = "LIFELINE_POLL_INTERVAL_SECONDS"
ENV_MAX_WAIT_SECONDS = "LIFELINE_MAX_WAIT_SECONDS"
ENV_MAX_WAIT_LIMIT_SECONDS = "LIFELINE_MAX_WAIT_LIMIT_SECONDS"
ENV_SECRET_KMS_KEY_ID = "LIFELINE_SECRET_KMS_KEY_ID"
ENV_BREAKGLASS_GROUP = "LIFELINE_BREAKGLASS_GROUP"
ENV_BREAKGLASS_CLUSTER_ROLE = "LIFELINE_BREAKGLASS_CLUSTER_ROLE"
ENV_AGENT_GROUP = "LIFELINE_AGENT_GROUP"
ENV_OPERATORS_GROUP = "LIFELINE_OPERATORS_GROUP"
ENV_OPERATORS_CLUSTER_ROLE = "LIFELINE_OPERATORS_CLUSTER_ROLE"
ENV_AGENT_PRINCIPAL_ARNS = "LIFELINE_AGENT_PRINCIPAL_ARNS"
ENV_SECRET_WRITER_ARN = "LIFELINE_SECRET_WRITER_ARN"
ENV_STACK_ACCOUNT = "LIFELINE_STACK_ACCOUNT"
ENV_STACK_REGION = "LIFELINE_STACK_REGION"
ENV_ALARM_TOPIC_ARN = "LIFELINE_ALARM_TOPIC_ARN"

TAG_CLUSTER = "lifeline:cluster"
TAG_MANAGED_BY = "lifeline:managed-by"
MANAGED_BY_VALUE = "lifeline-workflow"
# Lab-only: the STS address the functions sign cluster tokens for. No CDK setting feeds it and the template
# never has it (tests/infrastructure/test_default_template.py): on AWS it is unset and tokens are signed for
# the Region's STS endpoint, the only hosts aws-iam-authenticator accepts (sts.<region>.amazonaws.com, not a
# VPC endpoint's name). The lab's Lambda runtime alone sets it (lab/lab.py, Lab.start ->
# RegionServer.set_lambda_environment), to the Region through the service link, where its control planes
# verify tokens. It is read here because the signer is product code.
ENV_TOKEN_STS_ENDPOINT_URL = "LIFELINE_TOKEN_STS_ENDPOINT_URL"

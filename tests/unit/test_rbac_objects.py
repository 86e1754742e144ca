import pytest
import yaml
from lifeline_agent import rbac


def test_contract_objects():
    objs = rbac.lifeline_objects("ops:breakglass")
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert names == [
        ("ClusterRoleBinding", "lifeline-breakglass"),
        ("ClusterRoleBinding", "lifeline-operators"),
        ("ClusterRole", "lifeline-csr-requester"),
        ("ClusterRoleBinding", "lifeline-csr-requester"),
    ]
    assert objs[0]["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops:breakglass"}]
    assert objs[0]["roleRef"]["name"] == "cluster-admin"
    assert objs[1]["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                    "name": "lifeline:operators"}]
    assert objs[1]["roleRef"]["name"] == "cluster-admin"
    signer_rule = objs[2]["rules"][2]
    assert signer_rule == {
        "apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
        "resourceNames": ["kubernetes.io/kube-apiserver-client"], "verbs": ["approve"],
    }
    assert {s["name"] for s in objs[3]["subjects"]} == {"lifeline:agents", "ops:breakglass"}


def test_operators_binding_takes_its_group_and_cluster_role():
    objs = rbac.lifeline_objects(operators_group="ops:people", operators_cluster_role="view")
    binding = next(o for o in objs if o["metadata"]["name"] == rbac.OPERATORS_BINDING)
    assert binding["subjects"][0]["name"] == "ops:people"
    assert binding["roleRef"]["name"] == "view"
    assert binding["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "lifeline"}


@pytest.mark.parametrize("operators", ["lifeline:breakglass", "lifeline:agents"])
def test_the_operators_group_is_neither_the_break_glass_nor_the_agents_group(operators):
    with pytest.raises(rbac.RbacError, match="three different groups"):
        rbac.lifeline_objects(operators_group=operators)


def test_system_groups_refused():
    with pytest.raises(rbac.RbacError):
        rbac.breakglass_binding("system:masters")
    with pytest.raises(rbac.RbacError, match="operators"):
        rbac.operators_binding("system:masters")


def test_aws_auth_merge_keeps_other_entries_and_is_idempotent():
    existing = {"mapRoles": yaml.safe_dump([{"rolearn": "arn:aws:iam::123456789012:role/nodes",
                                              "username": "system:node:{{EC2PrivateDNSName}}",
                                              "groups": ["system:nodes"]}])}
    principals = ["arn:aws:iam::123456789012:role/lifeline-agent", "arn:aws:iam::123456789012:user/ops/agent1"]
    merged = rbac.merge_aws_auth(existing, principals)
    roles = yaml.safe_load(merged["mapRoles"])
    users = yaml.safe_load(merged["mapUsers"])
    assert [r["rolearn"].rsplit("/", 1)[1] for r in roles] == ["nodes", "lifeline-agent"]
    assert users == [{"userarn": principals[1], "username": "lifeline-agent:agent1", "groups": ["lifeline:agents"]}]
    assert rbac.merge_aws_auth(merged, principals) == merged


@pytest.mark.parametrize(
    "arn", ["*", "arn:aws:iam::123456789012:group/x", "arn:aws:sts::123456789012:assumed-role/r/s"]
)
def test_bad_principals(arn):
    with pytest.raises(rbac.RbacError):
        rbac.aws_auth_entries([arn])


def test_broken_aws_auth_is_named():
    with pytest.raises(rbac.RbacError, match="mapRoles"):
        rbac.merge_aws_auth({"mapRoles": "{not: [valid"}, ["arn:aws:iam::123456789012:role/a"])
